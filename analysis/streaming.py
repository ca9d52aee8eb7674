"""Live stability statistics over a sliding window: OADEV, MDEV, TDEV and MTIE.

The agent keeps, per source, a buffer of the last ``window`` phase samples on a
regular grid (NaN where a poll was lost) and, per octave tau, the running sums
the estimators need.  Samples arrive one by one (``append``, O(1)) and are
folded in in small batches (``update``) with numpy: each batch adds the terms
that the new samples complete and subtracts the terms that leave the window, so
the work per sample per tau is constant — the Dobrogowski-Kasznia approach of
running sums instead of recomputation.  Every ``window`` samples the sums are
recomputed from the buffer, so rounding never accumulates.

Every tau is folded in by the same numpy calls (index arrays with one row per
tau), so a fold costs a fixed number of numpy calls whatever the number of taus;
a call per tau per fold was what dominated the cost.

Estimators (NIST SP 1065; tau = m·tau0):
  OADEV^2(m) = sum_i (x[i+2m] − 2x[i+m] + x[i])^2 / (2 m^2 tau0^2 n)             (eq. 11)
  MDEV^2(m)  = sum_j (sum_{i=j}^{j+m−1} (x[i+2m] − 2x[i+m] + x[i]))^2
               / (2 m^4 tau0^2 n)                                               (eq. 15)
  TDEV(m)    = tau / sqrt(3) · MDEV(m)                                          (eq. 17)
  MTIE(m)    = max over windows of m+1 samples of (max x − min x)               (ITU-T G.810)
A term that touches a missing sample (NaN) is skipped, as in the batch
functions of ``timemon.analysis``, and ``n`` counts the terms that remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_WINDOW = 16384
MIN_TERMS = 2  # no point is published from fewer terms (as the batch functions)
NONE = -(1 << 62)  # no anchor term
BLOCK = 64  # slots per block: phase summaries and MTIE maxima are kept per block


def octave_ms(window: int, max_m: int | None = None) -> list[int]:
    """Averaging factors 1, 2, 4, ... that fit in the window (MDEV needs 3m + 1 samples)."""
    ms = []
    m = 1
    limit = (window - 1) // 3
    if max_m is not None:
        limit = min(limit, max_m)
    while m <= limit:
        ms.append(m)
        m *= 2
    return ms


@dataclass(frozen=True)
class StabilityPoint:
    """One tau of the live statistics; a deviation is None until it has enough terms."""

    tau: float
    m: int
    adev: float | None
    adev_n: int
    mdev: float | None
    tdev: float | None
    mdev_n: int
    mtie: float | None
    mtie_n: int


def _flat(lo: IntArray, length: IntArray) -> tuple[IntArray, IntArray]:
    """Concatenated ranges [lo[r], lo[r] + length[r]) and the row of each element."""
    length = np.maximum(length, 0)
    rows = np.repeat(np.arange(lo.size), length)
    ends = np.cumsum(length)
    idx = np.arange(int(ends[-1]) if ends.size else 0) + np.repeat(lo - (ends - length), length)
    return idx, rows


def _columns(width: int) -> IntArray:
    return np.arange(width, dtype=np.int64)[None, :]


class StreamingStability:
    """Sliding-window OADEV/MDEV/TDEV/MTIE at octave taus, O(1) work per sample per tau.

    ``append`` takes one grid slot (phase in seconds, NaN for a gap); ``update``
    folds the appended slots in; ``points`` gives the current values.  The phase
    lives in a linear buffer an eighth longer than the window, compacted (one copy
    of the window) when full, so every range of slots is a contiguous view.
    """

    def __init__(self, tau0: float, window: int = DEFAULT_WINDOW,
                 max_m: int | None = None) -> None:
        if window < 4:
            raise ValueError("window must hold at least 4 samples")
        self.tau0 = tau0
        self.window = window
        self.max_m = max_m
        self.ms = octave_ms(window, max_m)
        self._m = np.array(self.ms, dtype=np.int64)
        # Slots folded in between two compactions (each copies the window once): small,
        # as it is memory held by every source.
        self._spare = max(window // 32, BLOCK)
        self._buf = np.empty(window + self._spare)
        self._pending: list[float] = []
        self._blocks = window // BLOCK + 3  # ring sizes, in blocks
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a clock step)."""
        k = len(self.ms)
        self._base = 0  # absolute slot of _buf[0]
        self._total = 0  # slots folded in
        self._pending = []
        self._reference: float | None = None  # subtracted from phase: keeps sums well scaled
        self._since_recompute = 0
        self._adev_sum = np.zeros(k)
        self._adev_n = np.zeros(k, dtype=np.int64)
        self._mdev_sum = np.zeros(k)
        self._mdev_n = np.zeros(k, dtype=np.int64)
        # MDEV inner sums sum_{i=j}^{j+m−1} d2(i) as (j, NaN-free sum, NaN count) for the
        # newest term in the sum and for the oldest (j = NONE: none): each moves on by one
        # entering and one leaving second difference per slot.
        self._new_j = np.full(k, NONE, dtype=np.int64)
        self._new_s = np.zeros(k)
        self._new_bad = np.zeros(k, dtype=np.int64)
        self._old_j = np.full(k, NONE, dtype=np.int64)
        self._old_s = np.zeros(k)
        self._old_bad = np.zeros(k, dtype=np.int64)
        # MTIE: per tau, the largest range and the count of gap-free windows among the
        # window positions of each block, in a ring indexed by absolute block number.
        self._mtie_max = np.full((k, self._blocks), np.nan)
        # (uint8: a block holds at most BLOCK = 64 positions; a quarter of the memory)
        self._mtie_valid = np.zeros((k, self._blocks), dtype=np.uint8)
        # Phase summaries per block of slots: max and min, NaN when the block has a gap.
        self._bmax = np.full(self._blocks, np.nan)
        self._bmin = np.full(self._blocks, np.nan)
        # Least-squares sums for the frequency offset: n, Σt, Σx, Σt², Σtx over the gap-free
        # slots of the window, t in slots from _epoch (reset at each recompute, so t stays
        # below two windows and the sums keep their precision).
        self._epoch = 0
        self._ls = np.zeros(5)
        # MTIE of the window's first block (partly evicted), from the last fold.
        self._head_best = np.full(k, -np.inf)
        self._head_count = np.zeros(k, dtype=np.int64)

    # -- input --------------------------------------------------------------------

    def append(self, phase: float) -> None:
        """One grid slot: the phase (local − reference, seconds), or NaN for a gap."""
        if self._reference is None and math.isfinite(phase):
            self._reference = phase
        self._pending.append(phase)

    @property
    def count(self) -> int:
        """Slots in the window (including gaps), pending ones included."""
        return min(self._total + len(self._pending), self.window)

    @property
    def _start(self) -> int:
        return max(0, self._total - self.window)

    def _x(self, lo: int, hi: int) -> FloatArray:
        """Phase of absolute slots [lo, hi) as a view (they must be in the buffer)."""
        return self._buf[lo - self._base:hi - self._base]

    def phase_window(self) -> FloatArray:
        """The window's phase in time order, pending slots folded in (seconds)."""
        self.update()
        return self._x(self._start, self._total) + (self._reference or 0.0)

    # -- terms -------------------------------------------------------------------------

    def _d2(self, i: IntArray, m: IntArray) -> FloatArray:
        """Second differences x[i+2m] − 2x[i+m] + x[i] at absolute slots i."""
        b = self._buf
        j = i - self._base
        return b[j + 2 * m] - 2.0 * b[j + m] + b[j]

    def _adev_fold(self, lo: IntArray, hi: IntArray, rows: IntArray) -> tuple[FloatArray, IntArray]:
        """Per range r: sum of squared second differences of the terms starting in
        [lo[r], hi[r]) for tau row rows[r], and how many were gap-free."""
        idx, which = _flat(lo, hi - lo)
        d2 = self._d2(idx, self._m[rows][which])
        ok = np.isfinite(d2)
        sq = np.where(ok, d2 * d2, 0.0)
        return (np.bincount(which, sq, minlength=lo.size),
                np.bincount(which, ok, minlength=lo.size).astype(np.int64))

    def _inner_runs(self, rows: IntArray, j0: IntArray, length: IntArray,
                    anchored: npt.NDArray[np.bool_], first: FloatArray, first_bad: IntArray
                    ) -> tuple[FloatArray, IntArray]:
        """MDEV inner sums and NaN counts of the terms j0[r] + c, c < length[r], of tau
        row rows[r], one run per row of the returned arrays (padded with zeros).

        Each term follows from the one before by one entering and one leaving second
        difference, so a run costs O(length); only the first is summed in full (O(m))
        unless ``anchored`` (its sum and NaN count given in ``first``/``first_bad``).
        """
        m = self._m[rows]
        first = first.copy()
        first_bad = first_bad.copy()
        direct = np.flatnonzero(~anchored)
        if direct.size:
            idx, which = _flat(j0[direct], m[direct])
            d2 = self._d2(idx, m[direct][which])
            bad = ~np.isfinite(d2)
            first[direct] = np.bincount(which, np.where(bad, 0.0, d2), minlength=direct.size)
            first_bad[direct] = np.bincount(which, bad, minlength=direct.size).astype(np.int64)
        width = int(length.max())
        c = _columns(width)
        live = (c >= 1) & (c < length[:, None])
        j = j0[:, None] + np.where(live, c, 0)  # dead cells read term j0: always in range
        mm = m[:, None]
        entering = self._d2(np.where(live, j + mm - 1, j0[:, None]), mm)
        leaving = self._d2(np.where(live, j - 1, j0[:, None]), mm)
        bad_in, bad_out = ~np.isfinite(entering), ~np.isfinite(leaving)
        inc = np.where(live, np.where(bad_in, 0.0, entering) - np.where(bad_out, 0.0, leaving),
                       0.0)
        bad_inc = np.where(live, bad_in.astype(np.int64) - bad_out, 0)
        inc[:, 0] = first
        bad_inc[:, 0] = first_bad
        return np.cumsum(inc, axis=1), np.cumsum(bad_inc, axis=1)

    def _mdev_fold(self, rm_j0: IntArray, rm_j1: IntArray, rm_last: IntArray,
                   add_j0: IntArray, add_j1: IntArray) -> None:
        """Per tau, remove terms [rm_j0, rm_j1) (rm_j0 the first in the sum, rm_last the
        last one) and add terms [add_j0, add_j1) (add_j0 following the last in the sum):
        all runs in one pass."""
        rm = np.flatnonzero(rm_j1 > rm_j0)
        add = np.flatnonzero(add_j1 > add_j0)
        if not rm.size and not add.size:
            return
        r0, r1 = rm_j0[rm], rm_j1[rm]
        upto = np.minimum(r1 + 1, rm_last[rm] + 1)  # also the new first term, if any
        a0, a1 = add_j0[add], add_j1[add]
        add_anchored = self._new_j[add] == a0 - 1
        a_start = np.where(add_anchored, a0 - 1, a0)
        rows = np.concatenate((rm, add))
        start = np.concatenate((r0, a_start))
        length = np.concatenate((upto - r0, a1 - a_start))
        sums, bads = self._inner_runs(
            rows, start, length,
            np.concatenate((self._old_j[rm] == r0, add_anchored)),
            np.concatenate((self._old_s[rm], self._new_s[add])),
            np.concatenate((self._old_bad[rm], self._new_bad[add])))
        lo_col = np.concatenate((np.zeros_like(r0), add_anchored.astype(np.int64)))
        hi_col = np.concatenate((r1 - r0, length[rm.size:]))
        c = _columns(sums.shape[1])
        used = (c >= lo_col[:, None]) & (c < hi_col[:, None]) & (bads == 0)
        total = np.where(used, sums * sums, 0.0).sum(axis=1)
        count = used.sum(axis=1)
        end = (np.arange(rows.size), length - 1)
        last_s, last_bad = sums[end], bads[end]
        n = rm.size
        self._mdev_sum[rm] -= total[:n]
        self._mdev_n[rm] -= count[:n]
        self._old_j[rm] = np.where(length[:n] > r1 - r0, r1, NONE)
        self._old_s[rm] = last_s[:n]
        self._old_bad[rm] = last_bad[:n]
        self._mdev_sum[add] += total[n:]
        self._mdev_n[add] += count[n:]
        self._new_j[add] = a1 - 1
        self._new_s[add] = last_s[n:]
        self._new_bad[add] = last_bad[n:]

    # -- MTIE ---------------------------------------------------------------------------

    def _summarise_blocks(self, lo: int, hi: int) -> None:
        """Recompute the phase summaries of the blocks holding slots [lo, hi)."""
        first, last = lo // BLOCK, (hi - 1) // BLOCK + 1
        begin = max(first * BLOCK, self._base)
        head, tail = begin - first * BLOCK, last * BLOCK - hi
        x = self._x(begin, hi)
        # Cells before the buffer or after the last slot are no phase: -inf/+inf, so
        # they never win, while a real gap (NaN) makes the block's summary NaN.
        blocks_max = np.concatenate((np.full(head, -np.inf), x, np.full(tail, -np.inf)))
        blocks_min = np.concatenate((np.full(head, np.inf), x, np.full(tail, np.inf)))
        ring = np.arange(first, last) % self._blocks
        self._bmax[ring] = np.maximum.reduce(blocks_max.reshape(-1, BLOCK), axis=1)
        self._bmin[ring] = np.minimum.reduce(blocks_min.reshape(-1, BLOCK), axis=1)

    def _span_extrema(self, p: IntArray, q: IntArray) -> tuple[FloatArray, FloatArray]:
        """Max and min of the phase over slots [p[r], q[r]) (non-empty), NaN where the
        span holds a gap: partial blocks from the slots, whole blocks from the summaries."""
        c = -(-p // BLOCK) * BLOCK  # first block boundary at or after p
        f = np.maximum((q // BLOCK) * BLOCK, c)  # last boundary at or before q (not before c)
        heads = self._slot_extrema(p, np.minimum(c, q))
        tails = self._slot_extrema(np.maximum(f, p), q)
        nfull = (f - c) // BLOCK
        top = np.maximum(heads[0], tails[0])
        bottom = np.minimum(heads[1], tails[1])
        if nfull.max() > 0:
            cols = _columns(int(nfull.max()))
            inside = cols < nfull[:, None]
            ring = ((c // BLOCK)[:, None] + cols) % self._blocks
            top = np.maximum(top, np.where(inside, self._bmax[ring], -np.inf).max(axis=1))
            bottom = np.minimum(bottom, np.where(inside, self._bmin[ring], np.inf).min(axis=1))
        return top, bottom

    def _slot_extrema(self, p: IntArray, q: IntArray) -> tuple[FloatArray, FloatArray]:
        """Max and min over slots [p[r], q[r]) of fewer than BLOCK slots; −inf/+inf when
        empty, NaN when a slot is a gap."""
        n = q - p
        width = int(n.max()) if n.size else 0
        if width <= 0:
            return np.full(p.size, -np.inf), np.full(p.size, np.inf)
        cols = _columns(width)
        inside = cols < n[:, None]
        x = self._buf[np.where(inside, p[:, None] + cols - self._base, 0)]  # dead cells: slot 0
        return (np.where(inside, x, -np.inf).max(axis=1),
                np.where(inside, x, np.inf).min(axis=1))

    def _ranges(self, rows: IntArray, lo: IntArray, n: IntArray) -> FloatArray:
        """max − min of the phase over slots [k, k + m] for k = lo[r] + c, c < n[r], of
        tau row rows[r]: one row per r, NaN where the window touches a gap or c ≥ n[r].

        Taus with m ≥ n − 1: every window is (its part of the first n − 1 slots) + (the
        slots all of them share) + (its part of the last ones); the shared middle comes
        from the block summaries, so the cost is O(n + m / BLOCK).  Shorter taus (m a
        power of two): extrema of 2^q-slot spans by doubling over the slots involved.
        """
        width = int(n.max()) if n.size else 0
        out = np.full((rows.size, max(width, 1)), np.nan)
        if width <= 0:
            return out
        m = self._m[rows]
        long_ = np.flatnonzero((m >= n - 1) & (n > 0))
        if long_.size:
            lo_l, n_l, m_l = lo[long_], n[long_], m[long_]
            width = int(n_l.max())  # these rows' own width (the others may be much wider)
            inside = _columns(width) < n_l[:, None]
            head_cols = _columns(max(width - 1, 1))
            in_head = head_cols < (n_l - 1)[:, None]
            # Head: slots lo .. lo + n − 2, suffix extrema (reversed accumulations).
            head = self._buf[np.where(in_head, lo_l[:, None] + head_cols, lo_l[:, None])
                             - self._base]
            head_max = np.where(in_head, head, -np.inf)[:, ::-1]
            head_min = np.where(in_head, head, np.inf)[:, ::-1]
            head_max = np.maximum.accumulate(head_max, axis=1)[:, ::-1]
            head_min = np.minimum.accumulate(head_min, axis=1)[:, ::-1]
            # Tail: slots lo + m + 1 .. lo + m + n − 1, prefix extrema.
            tail_at = (lo_l + m_l + 1)[:, None]
            tail = self._buf[np.where(in_head, tail_at + head_cols, lo_l[:, None]) - self._base]
            tail_max = np.maximum.accumulate(np.where(in_head, tail, -np.inf), axis=1)
            tail_min = np.minimum.accumulate(np.where(in_head, tail, np.inf), axis=1)
            mid_max, mid_min = self._span_extrema(lo_l + n_l - 1, lo_l + m_l + 1)
            # Window c: head suffix from c, the middle, tail prefix up to c − 1.
            inf = np.full((long_.size, 1), np.inf)
            hm = np.concatenate((head_max, -inf), axis=1)[:, :width]
            hn = np.concatenate((head_min, inf), axis=1)[:, :width]
            tm = np.concatenate((-inf, tail_max), axis=1)[:, :width]
            tn = np.concatenate((inf, tail_min), axis=1)[:, :width]
            top = np.maximum(np.maximum(hm, tm), mid_max[:, None])
            bottom = np.minimum(np.minimum(hn, tn), mid_min[:, None])
            out[long_, :width] = np.where(inside, top - bottom, np.nan)
        short = np.flatnonzero((m < n - 1) & (n > 0))
        if short.size:
            # Rows whose slots are near each other (a fold's new positions; the window's
            # first block) share one doubling pass over the slots they cover.
            short = short[np.argsort(lo[short], kind="stable")]
            cut = np.flatnonzero(np.diff(lo[short]) > 4 * BLOCK) + 1
            for cluster in np.split(short, cut):
                self._short_ranges(out, cluster, lo, n, m)
        return out

    def _short_ranges(self, out: FloatArray, short: IntArray, lo: IntArray, n: IntArray,
                      m: IntArray) -> None:
        """``_ranges`` for taus with m < n − 1 (m a power of two): extrema of 2^q-slot
        spans by doubling over the slots the rows cover, O(slots · log m)."""
        first = int(lo[short].min())
        end = int((lo[short] + n[short] + m[short]).max())  # slots [first, end)
        hi_v = lo_v = self._x(first, end)
        span = 1
        for r in short[np.argsort(m[short])]:
            mr = int(m[r])
            while span < mr:  # extrema of every 2·span-slot run
                hi_v = np.maximum(hi_v[:-span], hi_v[span:])
                lo_v = np.minimum(lo_v[:-span], lo_v[span:])
                span *= 2
            k = int(lo[r]) - first
            cnt = int(n[r])
            x_end = self._x(int(lo[r]) + mr, int(lo[r]) + mr + cnt)  # slot k + m
            out[r, :cnt] = np.maximum(hi_v[k:k + cnt], x_end) - np.minimum(lo_v[k:k + cnt], x_end)
        return out

    def _ls_sums(self, lo: int, hi: int) -> FloatArray:
        """n, Σt, Σx, Σt², Σtx over the gap-free slots [lo, hi)."""
        x = self._x(lo, hi)
        ok = np.isfinite(x)
        t = np.arange(lo - self._epoch, hi - self._epoch, dtype=np.float64)[ok]
        x = x[ok]
        return np.array([t.size, t.sum(), x.sum(), np.dot(t, t), np.dot(t, x)])

    def _mtie_fold(self, lo: IntArray, hi: IntArray, head_lo: int, head_hi: IntArray) -> None:
        """Fold the ranges of window positions [lo, hi) of every tau into the block maxima,
        and summarise the positions [head_lo, head_hi) of the window's first block, which
        is partly evicted: its block maximum also holds positions that left the window."""
        k = self._m.size
        n = np.maximum(hi - lo, 0)
        head_n = np.maximum(head_hi - head_lo, 0)
        rows = np.flatnonzero(np.concatenate((n, head_n)) > 0)
        self._head_best = np.full(k, -np.inf)
        self._head_count = np.zeros(k, dtype=np.int64)
        if not rows.size:
            return
        starts_at = np.concatenate((lo, np.full(k, head_lo, dtype=np.int64)))[rows]
        tau_rows = rows % k
        r = self._ranges(tau_rows, starts_at, np.concatenate((n, head_n))[rows])
        is_head = rows >= k
        if is_head.any():
            h = r[is_head]
            ok = np.isfinite(h)
            self._head_best[tau_rows[is_head]] = np.where(ok, h, -np.inf).max(axis=1)
            self._head_count[tau_rows[is_head]] = ok.sum(axis=1)
        new = ~is_head
        if not new.any():
            return
        r, rows, first = r[new], tau_rows[new], starts_at[new]
        width = r.shape[1]
        block = (first[:, None] + _columns(width)) // BLOCK
        key = rows[:, None] * (1 << 40) + block  # (row, block), distinct per segment
        flat_key = key.ravel()
        flat_r = r.ravel()
        starts = np.flatnonzero(np.concatenate(([True], flat_key[1:] != flat_key[:-1])))
        maxima = np.fmax.reduceat(flat_r, starts)
        valid = np.add.reduceat(np.isfinite(flat_r).astype(np.int64), starts)
        row_of = rows[starts // width]
        ring = block.ravel()[starts] % self._blocks
        self._mtie_max[row_of, ring] = np.fmax(self._mtie_max[row_of, ring], maxima)
        self._mtie_valid[row_of, ring] += valid.astype(np.uint8)

    def _mtie(self) -> tuple[FloatArray, IntArray]:
        """MTIE over the window per tau (NaN when no window is gap-free) and the number
        of gap-free windows: the block maxima, the first block's from the last fold."""
        first = (self._start // BLOCK) % self._blocks
        blocks = self._mtie_max.copy()
        valid = self._mtie_valid.copy()
        blocks[:, first] = self._head_best
        valid[:, first] = self._head_count
        count = valid.sum(axis=1, dtype=np.int64)
        best = np.fmax.reduce(blocks, axis=1)
        best[count == 0] = np.nan
        return best, count

    # -- folding in -----------------------------------------------------------------

    def _fold(self, new: FloatArray) -> None:
        """Add len(new) ≤ window slots: retire the terms that lose their first slot,
        then add the terms the new slots complete."""
        w = self.window
        a = self._total
        b = a + new.size
        start_old, start_new = max(0, a - w), max(0, b - w)
        # Make room: keep the window's slots [start_old, a) at the front of the buffer.
        used = a - self._base
        if used + new.size > self._buf.size:
            keep = a - start_old
            self._buf[:keep] = self._buf[used - keep:used]
            self._base = start_old
        self._buf[a - self._base:b - self._base] = new
        self._total = b
        self._summarise_blocks(a, b)
        self._ls += self._ls_sums(a, b)
        if start_new > start_old:
            self._ls -= self._ls_sums(start_old, start_new)
        m = self._m
        k = m.size
        # OADEV: terms leaving (starting in [start_old, start_new) and complete) and terms
        # completed by the new slots, in one pass.
        leave_hi = np.minimum(start_new, a - 2 * m)
        add_lo = np.maximum(start_new, a - 2 * m)
        sums, counts = self._adev_fold(
            np.concatenate((np.full(k, start_old, dtype=np.int64), add_lo)),
            np.concatenate((np.maximum(leave_hi, start_old), np.maximum(b - 2 * m, add_lo))),
            np.concatenate((np.arange(k), np.arange(k))))
        self._adev_sum += sums[k:] - sums[:k]
        self._adev_n += counts[k:] - counts[:k]
        # MDEV.
        self._mdev_fold(np.full(k, start_old, dtype=np.int64),
                        np.minimum(start_new, a - 3 * m + 1), a - 3 * m,
                        np.maximum(start_new, a - 3 * m + 1), b - 3 * m + 1)
        # MTIE: clear blocks that left the window entirely, then add new positions.
        gone = np.arange(start_old // BLOCK, start_new // BLOCK) % self._blocks
        self._mtie_max[:, gone] = np.nan
        self._mtie_valid[:, gone] = 0
        head_end = np.minimum(b - m, (start_new // BLOCK + 1) * BLOCK)
        self._mtie_fold(np.maximum(start_new, a - m), b - m, start_new, head_end)

    def _recompute(self) -> None:
        """ADEV, MDEV and least-squares sums from the buffer, from scratch (bounds rounding
        error): contiguous slices per tau, no index arrays."""
        start, b = self._start, self._total
        self._epoch = start
        self._ls = self._ls_sums(start, b)
        x = self._x(start, b)
        self._new_j[:] = NONE
        self._old_j[:] = NONE
        for row, m in enumerate(self.ms):
            d2 = x[2 * m:] - 2.0 * x[m:x.size - m] + x[:x.size - 2 * m]
            ok = np.isfinite(d2)
            v = d2[ok]
            self._adev_sum[row], self._adev_n[row] = float(np.dot(v, v)), int(v.size)
            terms = d2.size - m + 1  # MDEV terms j = start .. b − 3m
            if terms <= 0:
                self._mdev_sum[row], self._mdev_n[row] = 0.0, 0
                continue
            # Inner sums as differences of a running sum of second differences (of noise
            # size, so no precision is lost), NaN counts likewise.
            run = np.concatenate(([0.0], np.cumsum(np.where(ok, d2, 0.0))))
            bad = np.concatenate(([0], np.cumsum(~ok)))
            inner = run[m:m + terms] - run[:terms]
            inner_bad = bad[m:m + terms] - bad[:terms]
            good = inner[inner_bad == 0]
            self._mdev_sum[row], self._mdev_n[row] = float(np.dot(good, good)), int(good.size)
            self._new_j[row] = start + terms - 1
            self._new_s[row], self._new_bad[row] = inner[-1], inner_bad[-1]
            self._old_j[row] = start
            self._old_s[row], self._old_bad[row] = inner[0], inner_bad[0]
        self._since_recompute = 0

    def _load(self, new: FloatArray) -> None:
        """Take many slots at once (a restart's history, a long outage): keep the last
        window of them and compute every statistic from scratch."""
        keep = np.concatenate((self._x(self._start, self._total), new))[-self.window:]
        self._total += new.size
        self._base = self._total - keep.size
        self._buf[:keep.size] = keep
        self._summarise_blocks(self._base, self._total)
        self._mtie_max[:] = np.nan
        self._mtie_valid[:] = 0
        start = self._start
        head_end = np.minimum(self._total - self._m, (start // BLOCK + 1) * BLOCK)
        self._mtie_fold(np.full(self._m.size, start, dtype=np.int64), self._total - self._m,
                        start, head_end)
        self._recompute()

    def update(self) -> None:
        """Fold the appended slots in (numpy batch work: call off the event loop)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        new = np.asarray(pending, dtype=np.float64) - (self._reference or 0.0)
        if new.size >= self.window // 2:
            self._load(new)
            return
        for lo in range(0, new.size, self._spare):
            self._fold(new[lo:lo + self._spare])
        self._since_recompute += new.size
        if self._since_recompute >= self.window:
            self._recompute()

    # -- results --------------------------------------------------------------------------

    def points(self) -> list[StabilityPoint]:
        self.update()
        mtie, mtie_n = self._mtie()
        out = []
        for row, m in enumerate(self.ms):
            tau = m * self.tau0
            adev = mdev = tdev = None
            adev_n, mdev_n = int(self._adev_n[row]), int(self._mdev_n[row])
            if adev_n >= MIN_TERMS:
                adev = math.sqrt(max(float(self._adev_sum[row]), 0.0) / (2.0 * adev_n)) / tau
            if mdev_n >= MIN_TERMS:
                mdev = (math.sqrt(max(float(self._mdev_sum[row]), 0.0) / (2.0 * mdev_n))
                        / (m * tau))
                tdev = tau / math.sqrt(3.0) * mdev
            n = int(mtie_n[row])
            value = float(mtie[row]) if n >= MIN_TERMS else None
            out.append(StabilityPoint(tau, m, adev, adev_n, mdev, tdev, mdev_n, value, n))
        return out

    def frequency_offset(self) -> float | None:
        """Least-squares slope of phase over the window (fractional frequency, s/s)."""
        self.update()
        n, st, sx, stt, stx = (float(v) for v in self._ls)
        if n < 3:
            return None
        denom = n * stt - st * st
        return (n * stx - st * sx) / denom / self.tau0 if denom > 0 else None
