"""Live stability statistics over a sliding window: OADEV, MDEV, TDEV and MTIE.

The agent keeps, per source, a ring buffer of the last ``window`` phase samples
on a regular grid (NaN where a poll was lost) and, per octave tau, the running
sums the estimators need.  Samples arrive one by one (``append``, O(1)) and
are folded in in small batches (``update``) with numpy: each batch adds the
terms that the new samples complete and subtracts the terms that leave the
window, so the work per sample per tau is constant — the Dobrogowski-Kasznia
approach of running sums instead of recomputation.  Every ``window`` samples
the sums are recomputed from the buffer, so rounding never accumulates.

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

DEFAULT_WINDOW = 16384
MIN_TERMS = 2  # no point is published from fewer terms (as the batch functions)


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


def _moving_sum(v: FloatArray, w: int) -> FloatArray:
    """Sums of w consecutive elements: out[j] = v[j] + ... + v[j+w−1]."""
    c = np.concatenate(([0.0], np.cumsum(v)))
    return c[w:] - c[:-w]


def _sliding_extrema(v: FloatArray, w: int) -> tuple[FloatArray, FloatArray]:
    """Max and min of every window of w consecutive elements, in O(len) (van Herk/Gil-Werman).

    NaNs are ignored here (fmax/fmin); callers mark windows that touch one.
    """
    n = v.size - w + 1
    if w == 1:
        return v.copy(), v.copy()
    pad = (-v.size) % w
    blocks = np.concatenate((v, np.full(pad, np.nan))).reshape(-1, w)
    out = []
    for ufunc in (np.fmax, np.fmin):
        prefix = ufunc.accumulate(blocks, axis=1).ravel()
        suffix = ufunc.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
        out.append(ufunc(suffix[:n], prefix[w - 1:w - 1 + n]))
    return out[0], out[1]


MTIE_BLOCK = 64  # window positions per block of MTIE maxima
BLOCK = 64  # phase slots per block summary (max, min, any NaN)


class _TauState:
    """Running sums for one averaging factor m; O(1) memory but the MTIE block maxima."""

    __slots__ = ("m", "adev_sum", "adev_n", "mdev_sum", "mdev_n", "inner_new", "inner_old",
                 "block_max", "block_valid")

    def __init__(self, m: int, window: int) -> None:
        self.m = m
        self.adev_sum = 0.0
        self.adev_n = 0
        self.mdev_sum = 0.0
        self.mdev_n = 0
        # MDEV inner sums sum_{i=j}^{j+m−1} d2(i) as (j, NaN-free sum, NaN count), for
        # the newest term in the sum and for the oldest: each moves on by one entering
        # and one leaving second difference per slot.
        self.inner_new: tuple[int, float, int] | None = None
        self.inner_old: tuple[int, float, int] | None = None
        # MTIE: max range and valid-window count per block of MTIE_BLOCK positions,
        # in a ring indexed by absolute block number.
        blocks = window // MTIE_BLOCK + 3
        self.block_max = np.full(blocks, np.nan)
        self.block_valid = np.zeros(blocks, dtype=np.int64)


class StreamingStability:
    """Sliding-window OADEV/MDEV/TDEV/MTIE at octave taus, O(1) work per sample per tau.

    ``append`` takes one grid slot (phase in seconds, NaN for a gap); ``update``
    folds the appended slots in; ``points`` gives the current values.  The phase
    lives in a linear buffer an eighth longer than the window, compacted (one copy of
    the window) when full, so every
    range of slots is a contiguous view.
    """

    def __init__(self, tau0: float, window: int = DEFAULT_WINDOW,
                 max_m: int | None = None) -> None:
        if window < 4:
            raise ValueError("window must hold at least 4 samples")
        self.tau0 = tau0
        self.window = window
        self.max_m = max_m
        self.ms = octave_ms(window, max_m)
        self._spare = max(window // 8, 64)  # slots folded in between two compactions
        self._buf = np.empty(window + self._spare)
        self._pending: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a clock step)."""
        self._base = 0  # absolute slot of _buf[0]
        self._total = 0  # slots folded in
        self._pending = []
        self._reference: float | None = None  # subtracted from phase: keeps sums well scaled
        self._taus = [_TauState(m, self.window) for m in self.ms]
        self._since_recompute = 0
        blocks = self.window // BLOCK + 3
        self._bmax = np.full(blocks, np.nan)
        self._bmin = np.full(blocks, np.nan)
        self._bnan = np.zeros(blocks, dtype=bool)

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

    def _d2(self, m: int, lo: int, hi: int) -> FloatArray:
        """Second differences x[i+2m] − 2x[i+m] + x[i] for i in [lo, hi)."""
        x = self._x(lo, hi + 2 * m)
        return x[2 * m:] - 2.0 * x[m:hi - lo + m] + x[:hi - lo]

    def _adev_terms(self, m: int, lo: int, hi: int) -> tuple[float, int]:
        """Sum of squared second differences for the terms starting at [lo, hi)."""
        if hi <= lo:
            return 0.0, 0
        d2 = self._d2(m, lo, hi)
        v = d2[np.isfinite(d2)]
        return float(np.dot(v, v)), int(v.size)

    def _inner_direct(self, m: int, j: int) -> tuple[float, int]:
        """MDEV inner sum of term j from scratch: O(m)."""
        d2 = self._d2(m, j, j + m)
        bad = ~np.isfinite(d2)
        return float(np.sum(np.where(bad, 0.0, d2))), int(bad.sum())

    def _inner_run(self, m: int, j0: int, j1: int, anchor: tuple[int, float, int] | None
                   ) -> tuple[FloatArray, FloatArray]:
        """Inner sums and NaN counts of the MDEV terms j in [j0, j1).

        Each follows from the one before by one entering and one leaving second
        difference, so a run costs O(j1 − j0); only the first is summed in full
        (O(m)) unless ``anchor`` = (j0, sum, NaN count) already gives it.
        """
        if anchor is not None and anchor[0] == j0:
            first, first_bad = anchor[1], anchor[2]
        else:
            first, first_bad = self._inner_direct(m, j0)
        n = j1 - j0 - 1
        if n <= 0:
            return np.array([first]), np.array([first_bad])
        d2 = self._d2(m, j0, j1 + m - 1)  # d2(j0) .. d2(j1 + m − 2)
        entering, leaving = d2[m:m + n], d2[:n]  # for term j: d2(j + m − 1) in, d2(j − 1) out
        bad_in, bad_out = ~np.isfinite(entering), ~np.isfinite(leaving)
        inc = np.where(bad_in, 0.0, entering) - np.where(bad_out, 0.0, leaving)
        sums = np.concatenate(([first], first + np.cumsum(inc)))
        bads = np.concatenate(([first_bad], first_bad + np.cumsum(bad_in.astype(np.int64)
                                                                 - bad_out)))
        return sums, bads

    def _mdev_remove(self, t: _TauState, j0: int, j1: int, last: int) -> None:
        """Remove terms [j0, j1) (j0 the first in the sum; ``last`` the last one)."""
        if j1 <= j0:
            return
        upto = min(j1 + 1, last + 1)  # also the new first term, when there is one
        sums, bads = self._inner_run(t.m, j0, upto, t.inner_old)
        removed, removed_bad = sums[:j1 - j0], bads[:j1 - j0]
        v = removed[removed_bad == 0]
        t.mdev_sum -= float(np.dot(v, v))
        t.mdev_n -= int(v.size)
        t.inner_old = (j1, float(sums[-1]), int(bads[-1])) if upto > j1 else None

    def _mdev_add(self, t: _TauState, j0: int, j1: int) -> None:
        """Add terms [j0, j1), j0 following the last term in the sum."""
        if j1 <= j0:
            return
        anchored = t.inner_new is not None and t.inner_new[0] == j0 - 1
        sums, bads = self._inner_run(t.m, j0 - 1 if anchored else j0, j1, t.inner_new)
        if anchored:
            sums, bads = sums[1:], bads[1:]
        v = sums[bads == 0]
        t.mdev_sum += float(np.dot(v, v))
        t.mdev_n += int(v.size)
        t.inner_new = (j1 - 1, float(sums[-1]), int(bads[-1]))

    def _block_extrema(self, lo: int, hi: int) -> tuple[float, float, bool]:
        """(max, min, any NaN) of the phase over slots [lo, hi), from the block summaries:
        O((hi − lo) / BLOCK) plus two partial blocks."""
        first_full = -(-lo // BLOCK)
        last_full = hi // BLOCK
        if last_full <= first_full:
            x = self._x(lo, hi)
            nan = bool(np.isnan(x).any())
            return float(np.fmax.reduce(x)), float(np.fmin.reduce(x)), nan
        parts = [self._x(lo, first_full * BLOCK), self._x(last_full * BLOCK, hi)]
        ring = np.arange(first_full, last_full) % self._bmax.size
        hi_v = float(np.fmax.reduce(self._bmax[ring]))
        lo_v = float(np.fmin.reduce(self._bmin[ring]))
        nan = bool(self._bnan[ring].any())
        for part in parts:
            if part.size:
                hi_v = max(hi_v, float(np.fmax.reduce(part))) if not math.isnan(hi_v) \
                    else float(np.fmax.reduce(part))
                lo_v = min(lo_v, float(np.fmin.reduce(part))) if not math.isnan(lo_v) \
                    else float(np.fmin.reduce(part))
                nan = nan or bool(np.isnan(part).any())
        return hi_v, lo_v, nan

    def _summarise_blocks(self, lo: int, hi: int) -> None:
        """Recompute the block summaries of the blocks holding slots [lo, hi)."""
        size = self._bmax.size
        for block in range(lo // BLOCK, (hi - 1) // BLOCK + 1):
            x = self._x(max(block * BLOCK, self._base), min((block + 1) * BLOCK, self._total))
            self._bmax[block % size] = np.fmax.reduce(x) if x.size else np.nan
            self._bmin[block % size] = np.fmin.reduce(x) if x.size else np.nan
            self._bnan[block % size] = bool(np.isnan(x).any())

    def _ranges(self, m: int, lo: int, hi: int) -> FloatArray:
        """max − min of x over slots [k, k+m] for k in [lo, hi); NaN where a gap is touched.

        Short windows: van Herk/Gil-Werman over the slots, O(hi − lo + m).  Long ones:
        every window is (its part of the first hi − lo − 1 slots) + (the slots all the
        windows share) + (its part of the last ones); the shared middle comes from the
        block summaries, so the cost is O(hi − lo + m / BLOCK).
        """
        n, w = hi - lo, m + 1
        if w <= n + 4 * BLOCK:
            x = self._x(lo, hi + m)
            hi_v, lo_v = _sliding_extrema(x, w)
            bad = _moving_sum(np.isnan(x).astype(np.float64), w) > 0.5
            r = hi_v - lo_v
            r[bad] = np.nan
            return r
        mid_max, mid_min, mid_nan = self._block_extrema(lo + n - 1, lo + w)
        head = self._x(lo, lo + n - 1)[::-1]  # suffixes of the head, as prefixes reversed
        tail = self._x(lo + w, lo + w + n - 1)
        nan_fill = np.full(1, np.nan)
        head_max = np.concatenate((np.fmax.accumulate(head)[::-1], nan_fill))
        head_min = np.concatenate((np.fmin.accumulate(head)[::-1], nan_fill))
        head_nan = np.concatenate((np.logical_or.accumulate(np.isnan(head))[::-1], [False]))
        tail_max = np.concatenate((nan_fill, np.fmax.accumulate(tail)))
        tail_min = np.concatenate((nan_fill, np.fmin.accumulate(tail)))
        tail_nan = np.concatenate(([False], np.logical_or.accumulate(np.isnan(tail))))
        top = np.fmax(np.fmax(head_max, tail_max), mid_max)
        bottom = np.fmin(np.fmin(head_min, tail_min), mid_min)
        r = top - bottom
        r[head_nan | tail_nan | mid_nan] = np.nan
        return r

    def _mtie_add(self, t: _TauState, lo: int, hi: int) -> None:
        """Fold the ranges of window positions [lo, hi) into the block maxima."""
        if hi <= lo:
            return
        r = self._ranges(t.m, lo, hi)
        blocks = t.block_max.size
        first_block = lo // MTIE_BLOCK
        offsets = np.arange(lo, hi) // MTIE_BLOCK - first_block
        starts = np.flatnonzero(np.r_[True, offsets[1:] != offsets[:-1]])
        maxima = np.fmax.reduceat(r, starts)
        valid = np.add.reduceat(np.isfinite(r).astype(np.int64), starts)
        ring = (first_block + offsets[starts]) % blocks
        t.block_max[ring] = np.fmax(t.block_max[ring], maxima)
        t.block_valid[ring] += valid

    def _mtie(self, t: _TauState) -> tuple[float | None, int]:
        """MTIE over the window: the blocks' maxima, the first (partly evicted) block
        recomputed from the phase."""
        lo, hi = self._start, self._total - t.m  # positions of windows inside the window
        if hi <= lo:
            return None, 0
        blocks = t.block_max.size
        first_block, last_block = lo // MTIE_BLOCK, (hi - 1) // MTIE_BLOCK
        head_end = min(hi, (first_block + 1) * MTIE_BLOCK)
        head = self._ranges(t.m, lo, head_end)
        head_ok = np.isfinite(head)
        best = float(head[head_ok].max()) if head_ok.any() else -math.inf
        count = int(head_ok.sum())
        if last_block > first_block:
            ring = np.arange(first_block + 1, last_block + 1) % blocks
            maxima = t.block_max[ring]
            if np.isfinite(maxima).any():
                best = max(best, float(np.nanmax(maxima)))
            count += int(t.block_valid[ring].sum())
        return (best if count else None), count

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
        for t in self._taus:
            m = t.m
            # Terms leaving: those starting in [start_old, start_new) that were complete.
            s, n = self._adev_terms(m, start_old, min(start_new, a - 2 * m))
            t.adev_sum -= s
            t.adev_n -= n
            self._mdev_remove(t, start_old, min(start_new, a - 3 * m + 1), a - 3 * m)
            # Terms completed by the new slots.
            s, n = self._adev_terms(m, max(start_new, a - 2 * m), b - 2 * m)
            t.adev_sum += s
            t.adev_n += n
            self._mdev_add(t, max(start_new, a - 3 * m + 1), b - 3 * m + 1)
            # MTIE: clear blocks that left the window entirely, then add new positions.
            blocks = t.block_max.size
            for block in range(start_old // MTIE_BLOCK, start_new // MTIE_BLOCK):
                t.block_max[block % blocks] = np.nan
                t.block_valid[block % blocks] = 0
            self._mtie_add(t, max(start_new, a - m), b - m)

    def _recompute(self) -> None:
        """All sums from the buffer, from scratch (bounds rounding error)."""
        start, b = self._start, self._total
        for t in self._taus:
            m = t.m
            t.adev_sum, t.adev_n = self._adev_terms(m, start, b - 2 * m)
            t.mdev_sum, t.mdev_n = 0.0, 0
            t.inner_new = t.inner_old = None
            self._mdev_add(t, start, b - 3 * m + 1)
        self._since_recompute = 0

    def update(self) -> None:
        """Fold the appended slots in (numpy batch work: call off the event loop)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        new = np.asarray(pending, dtype=np.float64) - (self._reference or 0.0)
        for lo in range(0, new.size, self._spare):
            self._fold(new[lo:lo + self._spare])
        self._since_recompute += new.size
        if self._since_recompute >= self.window:
            self._recompute()

    # -- results --------------------------------------------------------------------------

    def points(self) -> list[StabilityPoint]:
        self.update()
        out = []
        for t in self._taus:
            m, tau = t.m, t.m * self.tau0
            adev = mdev = tdev = None
            if t.adev_n >= MIN_TERMS:
                adev = math.sqrt(max(t.adev_sum, 0.0) / (2.0 * t.adev_n)) / tau
            if t.mdev_n >= MIN_TERMS:
                mdev = math.sqrt(max(t.mdev_sum, 0.0) / (2.0 * t.mdev_n)) / (m * tau)
                tdev = tau / math.sqrt(3.0) * mdev
            mtie, mtie_n = self._mtie(t)
            if mtie_n < MIN_TERMS:
                mtie = None
            out.append(StabilityPoint(tau, m, adev, t.adev_n, mdev, tdev, t.mdev_n, mtie,
                                      mtie_n))
        return out

    def frequency_offset(self) -> float | None:
        """Least-squares slope of phase over the window (fractional frequency, s/s)."""
        x = self.phase_window()
        ok = np.isfinite(x)
        if ok.sum() < 3:
            return None
        t = np.arange(x.size, dtype=np.float64)[ok] * self.tau0
        y = x[ok]
        t -= t.mean()
        denom = float(np.dot(t, t))
        return float(np.dot(t, y - y.mean()) / denom) if denom > 0 else None
