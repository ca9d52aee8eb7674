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
a call per tau per fold was what dominated the cost.  In the steady state (a full
window, folds much shorter than it) the index arrays depend only on the window,
the fold's length and its position modulo BLOCK: ``_Plan`` builds them once for
every source, and a fold is then some 60 numpy calls (``_fold_steady``).  Other
folds (filling the window, long outages, short windows) take the general path.

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

import functools
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


@dataclass(frozen=True, slots=True)
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


# Each field's slot setter: a frozen dataclass's __init__ sets every field through
# object.__setattr__ (3 µs a point, as much as the rest of ``points``).  Slots, not a
# __dict__, because the points of every source stay in memory (112 bytes a point less:
# 1.8 KB a source at 16 taus, measured with tracemalloc).
_SET = {name: getattr(StabilityPoint, name).__set__ for name in StabilityPoint.__slots__}
_set_tau, _set_m, _set_adev, _set_adev_n = _SET["tau"], _SET["m"], _SET["adev"], _SET["adev_n"]
_set_mdev, _set_tdev, _set_mdev_n = _SET["mdev"], _SET["tdev"], _SET["mdev_n"]
_set_mtie, _set_mtie_n = _SET["mtie"], _SET["mtie_n"]


def _point(tau: float, m: int, adev: float | None, adev_n: int, mdev: float | None,
           tdev: float | None, mdev_n: int, mtie: float | None, mtie_n: int) -> StabilityPoint:
    """A StabilityPoint built without the frozen dataclass's __init__ (see _SET)."""
    point = object.__new__(StabilityPoint)
    _set_tau(point, tau)
    _set_m(point, m)
    _set_adev(point, adev)
    _set_adev_n(point, adev_n)
    _set_mdev(point, mdev)
    _set_tdev(point, tdev)
    _set_mdev_n(point, mdev_n)
    _set_mtie(point, mtie)
    _set_mtie_n(point, mtie_n)
    return point


def _flat(lo: IntArray, length: IntArray) -> tuple[IntArray, IntArray]:
    """Concatenated ranges [lo[r], lo[r] + length[r]) and the row of each element."""
    length = np.maximum(length, 0)
    rows = np.repeat(np.arange(lo.size), length)
    ends = np.cumsum(length)
    idx = np.arange(int(ends[-1]) if ends.size else 0) + np.repeat(lo - (ends - length), length)
    return idx, rows


def _columns(width: int) -> IntArray:
    return np.arange(width, dtype=np.int64)[None, :]


def _ring_blocks(window: int) -> int:
    """Size of the per-block rings: the window's blocks, partial ones and a fold's."""
    return window // BLOCK + 3


class _Plan:
    """Index templates of a steady-state fold of n slots from slot a, a % BLOCK == phase.

    They depend on nothing else (the window, the number of taus, n, the phase), so one
    plan serves every such fold of every source, and a fold is a fixed, small number of
    numpy calls.  Slot offsets are from a, or from u0 · BLOCK (u0 = a // BLOCK, the first
    block holding new slots) for MTIE.
    """

    def __init__(self, window: int, k: int, n: int, phase: int) -> None:
        w = window
        ms = np.array([1 << q for q in range(k)], dtype=np.int64)
        col = ms[:, None]
        self.cols = np.arange(n, dtype=np.int64)
        # OADEV/MDEV.  Four runs of n second differences d(i) = x[i] − 2x[i+m] + x[i+2m] per
        # tau, from i = a − 3m and a − 2m (new side: the MDEV inner sums move in by
        # d(a − 2m + c) − d(a − 3m + c); the OADEV terms in are d(a − 2m + c)) and from
        # i = a − w and a − w + m (old side: the MDEV sums move out, the OADEV terms out
        # are d(a − w + c)).  Each side reads x at four slots m apart: (2, 4, k, 1).
        steps = np.arange(4)[:, None, None]
        self.x_off = np.stack((-3 * col + steps * col, -w + steps * col))
        # Terms of (OADEV: the runs in and out after a zero column; MDEV: the cumulated
        # runs after the anchors) that are summed: OADEV 1..n; MDEV in 1..n, out 0..n−1.
        self.terms = np.ones((2, 2, 1, n + 1), dtype=bool)
        self.terms[0, :, 0, 0] = self.terms[1, 0, 0, 0] = self.terms[1, 1, 0, n] = False
        # Least squares: weights 1 and c (gap-free folds); t from a − epoch (with gaps).
        self.ls_c = np.stack((np.ones(n), self.cols.astype(np.float64)))
        self.ls_t = np.stack((self.cols, self.cols - w)).astype(np.float64)
        self._mtie(w, k, n, phase, ms)
        # The two large index templates as int32 (offsets within a buffer, far below
        # 2^31): 47 kB a plan instead of 85 kB at 128-slot folds of the default window, up
        # to 128 plans cached; numpy widens them to intp as it indexes, a copy of a few µs
        # per fold.
        self.range_col = self.range_col.astype(np.int32)
        self.gather = self.gather.astype(np.int32)
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    def _mtie(self, w: int, k: int, n: int, phase: int, ms: IntArray) -> None:
        """MTIE: the ranges of the new positions k = a − m + c (c < n) of every tau and of
        the head's, the positions of the window's first block from its first slot
        a + n − w on (first position r0 in block hb from u0; the same for every tau).
        With r0 = 0 the first block lost no position: its block maximum stands, no head.

        All slots are gathered in one (x, −x) array ``work`` (so that every extremum is a
        max and a range a sum): per column region, and then a range is the max of three
        of its cells, gathered by ``range_col`` (3, k, width).
        """
        self.nb = (phase + n - 1) // BLOCK + 1  # blocks holding new slots
        self.hb, self.r0 = divmod(phase + n - w, BLOCK)
        self.n_head = BLOCK - self.r0 if self.r0 else 0
        self.width = width = n + self.n_head  # a row of ranges: new positions, the head's
        c = np.arange(width)
        new = c < n
        blocks = np.arange(self.nb, dtype=np.int64)
        self.blocks = blocks
        in_block = np.arange(BLOCK)
        short, long_ = ms[ms < BLOCK], ms[ms >= BLOCK]
        top = int(short.max())  # (m = 1 is always there)
        gather = []
        # Short taus (m = 2^q < BLOCK): extrema of 2^q-slot runs by doubling (level q: one
        # region of short_len columns) over the slots of the new positions and the head's;
        # [k, k + m] joins the runs at k and k + 1.
        self.levels = top.bit_length()
        gather.append(phase + np.arange(-top, n))
        if self.n_head:
            gather.append(phase + n - w + np.arange(self.n_head + top))
        self.short_len = sum(g.size for g in gather)
        # Shared by the long taus: the new slots' blocks (prefix extrema; the block
        # summaries) and the head block reversed (suffix extrema).
        self.c_shared = self.short_len
        gather.append((blocks[:, None] * BLOCK + in_block).ravel())
        if self.n_head:
            gather.append(self.hb * BLOCK + BLOCK - 1 - in_block)
        self.summary_col = self.c_shared + blocks * BLOCK + BLOCK - 1
        self.summary_col[-1] = self.c_shared + (self.nb - 1) * BLOCK + (phase + n - 1) % BLOCK
        # Long taus (m a multiple of BLOCK): [k, k + m] is the suffix of k's block u, the
        # blocks u + 1 .. u + m/BLOCK − 1 (summaries) and the prefix of block u + m/BLOCK.
        # Per tau: its new positions' blocks (reversed) and the head's prefix block.
        c_long = sum(g.size for g in gather)
        per_long = (self.nb + (1 if self.n_head else 0)) * BLOCK
        for m in long_.tolist():
            gather.append((blocks[:, None] * BLOCK + BLOCK - 1 - in_block).ravel() - m)
            if self.n_head:
                gather.append(self.hb * BLOCK + m + in_block)
        self.gather = np.concatenate(gather)
        self.c_mid = self.gather.size
        # Middle spans of the long taus with m ≥ 2·BLOCK: reduceat pairs into the doubled
        # ring of block summaries from the head block's cell, per new block, then the head.
        span = long_[long_ >= 2 * BLOCK] // BLOCK
        per_mid = self.nb + (1 if self.n_head else 0)
        first = 1 - span[:, None] + blocks - self.hb
        if self.n_head:
            first = np.concatenate((first, np.ones((span.size, 1), dtype=np.int64)), axis=1)
        self.mid_pairs = np.stack((first, first + span[:, None] - 1), axis=2).ravel()
        self.c_none = self.c_mid + self.mid_pairs.size  # a −inf column: an empty middle
        self.c_levels = self.c_none + 1  # levels 1.. of the short taus
        self.columns = self.c_levels + (self.levels - 1) * self.short_len

        def level(q: int) -> int:
            return 0 if q == 0 else self.c_levels + (q - 1) * self.short_len

        range_col = np.empty((3, k, width), dtype=np.int64)
        for row, m in enumerate(ms.tolist()):
            if m < BLOCK:
                at = level(m.bit_length() - 1) + np.where(new, top - m + c, top + c)
                range_col[:, row] = (at, at + 1, at + 1)
                continue
            t = row - short.size
            p = phase + c  # new position c: its slot less m, from u0 · BLOCK
            r = np.where(new, p % BLOCK, self.r0 + c - n)  # its place in its block
            own = np.where(new, p // BLOCK * BLOCK + BLOCK - 1 - r, self.nb * BLOCK + r)
            range_col[0, row] = c_long + t * per_long + own
            mid = np.where(new, p // BLOCK, self.nb)
            t_mid = t - (long_.size - span.size)
            range_col[1, row] = (self.c_mid + 2 * (t_mid * per_mid + mid) if t_mid >= 0
                                 else self.c_none)
            range_col[2, row] = self.c_shared + np.where(new, p, (self.nb + 1) * BLOCK - 1 - r)
        self.range_col = range_col
        # Block maxima: reduceat pairs over the rows of ranges (one spare cell at the end):
        # per tau and block of new positions, then each tau's head positions.
        rows = np.repeat(np.arange(k), n)
        block_of = ((phase - ms[:, None] + self.cols) // BLOCK).ravel()  # from u0
        cell = rows * width + np.tile(self.cols, k)
        cut = np.flatnonzero(np.concatenate(
            ([True], (block_of[1:] != block_of[:-1]) | (rows[1:] != rows[:-1]))))
        end = np.append(cut[1:], rows.size)
        lo, hi = cell[cut], cell[end - 1] + 1
        if self.n_head:
            head = np.arange(k) * width + n
            lo, hi = np.concatenate((lo, head)), np.concatenate((hi, head + self.n_head))
        self.seg_pairs = np.stack((lo, hi), axis=1).ravel()
        self.n_seg = cut.size
        self.seg_block = block_of[cut]
        self.seg_row = rows[cut] * _ring_blocks(w)  # offset of the row in the rings


@functools.lru_cache(maxsize=128)
def _plan(window: int, k: int, n: int, phase: int) -> _Plan:
    # (A plan takes about a millisecond to build, and 47 kB at the agent's usual 128-slot
    # folds of the default window; sources fold at their own phase, so there are up to
    # BLOCK plans per length.)
    return _Plan(window, k, n, phase)


class StreamingStability:
    """Sliding-window OADEV/MDEV/TDEV/MTIE at octave taus, O(1) work per sample per tau.

    ``append`` takes one grid slot (phase in seconds, NaN for a gap); ``update``
    folds the appended slots in; ``points`` gives the current values.  The phase
    lives in a linear buffer 1/64 longer than the window (plus a block), compacted (one
    copy of the window) when full, so every range of slots is a contiguous view.
    """

    def __init__(self, tau0: float, window: int = DEFAULT_WINDOW,
                 max_m: int | None = None) -> None:
        if window < 4:
            raise ValueError("window must hold at least 4 samples")
        self.tau0 = tau0
        self._spacing = tau0  # see set_spacing
        self.window = window
        self.max_m = max_m
        self.ms = octave_ms(window, max_m)
        self._m = np.array(self.ms, dtype=np.int64)
        tau = self._m * tau0
        self._tau_list = tau.tolist()
        self._dev_scale = np.stack((tau, self._m * tau))  # OADEV: tau; MDEV: m · tau
        self._tdev_scale = tau / math.sqrt(3.0)
        # Slots folded in between two compactions (each copies the window once): small,
        # as it is memory held by every source.  At the default window, 256 slots keep a
        # usual fold (128-140 slots at 1 s) in one chunk, and the buffer (133,632 bytes)
        # in 33 pages of its own mapping: 512 made it 34, 4 MiB more at 1,000 sources.
        # A compaction (a 128 KiB copy, ~10 µs) then comes every second fold, not fourth.
        self._spare = max(window // 64, BLOCK)
        self._room = window + self._spare
        # (BLOCK slots more: a steady fold reads the newest block whole, past the last slot)
        self._buf = np.zeros(self._room + BLOCK)
        self._pending: list[float] = []
        self._blocks = _ring_blocks(window)  # ring sizes, in blocks
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a clock step)."""
        k = len(self.ms)
        self._base = 0  # absolute slot of _buf[0]
        self._total = 0  # slots folded in
        self._pending = []
        self._reference: float | None = None  # subtracted from phase: keeps sums well scaled
        self._since_recompute = 0
        # Sums of the OADEV and MDEV terms and their counts (rows of (2, k) arrays).
        self._sums = np.zeros((2, k))
        self._counts = np.zeros((2, k), dtype=np.int64)
        self._adev_sum, self._mdev_sum = self._sums
        self._adev_n, self._mdev_n = self._counts
        # MDEV inner sums sum_{i=j}^{j+m−1} d2(i) as (j, NaN-free sum, NaN count) for the
        # newest term in the sum and for the oldest (j = NONE: none): each moves on by one
        # entering and one leaving second difference per slot.
        # Rows of (2, k) arrays, so that a steady fold moves both anchors at once.
        self._anchor_j = np.full((2, k), NONE, dtype=np.int64)
        self._anchor_s = np.zeros((2, k))
        self._anchor_bad = np.zeros((2, k), dtype=np.int64)
        self._new_j, self._old_j = self._anchor_j
        self._new_s, self._old_s = self._anchor_s
        self._new_bad, self._old_bad = self._anchor_bad
        self._anchored = False  # anchors known to be the window's ends (steady folds)
        self._anchor_gaps: bool | None = None  # whether an anchor sum has a gap (None: unknown)
        # MTIE: per tau, the largest range and the count of gap-free windows among the
        # window positions of each block, in a ring indexed by absolute block number.
        self._mtie_max = np.full((k, self._blocks), np.nan)
        # (uint8: a block holds at most BLOCK = 64 positions; a quarter of the memory)
        self._mtie_valid = np.zeros((k, self._blocks), dtype=np.uint8)
        # Phase summaries per block of slots: max and −min (every extremum a max), NaN when
        # the block has a gap.  (A steady fold reduces spans of it that may wrap around
        # the ring: it doubles the ring in a temporary, 8 kB, rather than every source
        # holding it twice.)
        self._bsum = np.full((2, self._blocks), np.nan)
        # Least-squares sums for the frequency offset: n, Σt, Σx, Σt², Σtx over the gap-free
        # slots of the window, t in slots from _epoch (reset at each recompute, so t stays
        # below two windows and the sums keep their precision).
        self._epoch = 0
        self._ls = np.zeros(5)
        self._points: list[StabilityPoint] | None = None  # of the state folded in

    def set_spacing(self, spacing: float) -> None:
        """The measured mean interval between slots (seconds), when it is not tau0: polls
        spaced at least one interval apart arrive a little late each time (1.0023 s
        apart at 1,000 sources on one agent).  ADEV, MDEV and the frequency offset are
        then computed with it, as an analysis of the recorded samples on their median
        interval (``timemon analyze``, Stable32) computes them; the taus stay m · tau0,
        the exported labels.  TDEV and MTIE, at m slots, do not depend on it."""
        if spacing != self._spacing:
            self._spacing = spacing
            self._points = None

    # -- input --------------------------------------------------------------------

    def append(self, phase: float) -> None:
        """One grid slot: the phase (local − reference, seconds), or NaN for a gap."""
        if self._reference is None and math.isfinite(phase):
            self._reference = phase
        self._pending.append(phase)

    def extend(self, phases: list[float]) -> None:
        """``append`` of each, in order (a restart's replayed window at once)."""
        if self._reference is None:
            for phase in phases:
                if math.isfinite(phase):
                    self._reference = phase
                    break
        self._pending.extend(phases)

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
        summary = np.stack((np.maximum.reduce(blocks_max.reshape(-1, BLOCK), axis=1),
                            -np.minimum.reduce(blocks_min.reshape(-1, BLOCK), axis=1)))
        self._bsum[:, ring] = summary

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
            top = np.maximum(top, np.where(inside, self._bsum[0, ring], -np.inf).max(axis=1))
            bottom = np.minimum(bottom, -np.where(inside, self._bsum[1, ring], -np.inf).max(axis=1))
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
        # (Sums of products, not np.dot: BLAS may thread a long dot, which stalls for
        # milliseconds when the other cores are busy.)
        return np.array([t.size, t.sum(), x.sum(), (t * t).sum(), (t * x).sum()])

    def _mtie_fold(self, lo: IntArray, hi: IntArray, head_lo: int, head_hi: IntArray) -> None:
        """Fold the ranges of window positions [lo, hi) of every tau into the block maxima,
        and summarise the positions [head_lo, head_hi) of the window's first block anew: it
        is partly evicted, so its block maximum held positions that left the window."""
        k = self._m.size
        n = np.maximum(hi - lo, 0)
        head_n = np.maximum(head_hi - head_lo, 0)
        rows = np.flatnonzero(np.concatenate((n, head_n)) > 0)
        head_best = np.full(k, -np.inf)
        head_count = np.zeros(k, dtype=np.int64)
        if rows.size:
            self._mtie_positions(rows, lo, n, head_lo, head_n, head_best, head_count)
        # (after the new positions, which may be in the head block: it covers them)
        head_cell = (head_lo // BLOCK) % self._blocks
        self._mtie_max[:, head_cell] = head_best
        self._mtie_valid[:, head_cell] = head_count

    def _mtie_positions(self, rows: IntArray, lo: IntArray, n: IntArray, head_lo: int,
                        head_n: IntArray, head_best: FloatArray, head_count: IntArray) -> None:
        """``_mtie_fold`` for the rows (tau rows, then k + tau rows for the head) that
        have positions: the block maxima, and the head's summary into head_best/count."""
        k = self._m.size
        starts_at = np.concatenate((lo, np.full(k, head_lo, dtype=np.int64)))[rows]
        tau_rows = rows % k
        r = self._ranges(tau_rows, starts_at, np.concatenate((n, head_n))[rows])
        is_head = rows >= k
        if is_head.any():
            h = r[is_head]
            ok = np.isfinite(h)
            head_best[tau_rows[is_head]] = np.where(ok, h, -np.inf).max(axis=1)
            head_count[tau_rows[is_head]] = ok.sum(axis=1)
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
        of gap-free windows, from the block maxima."""
        count = self._mtie_valid.sum(axis=1, dtype=np.uint32)  # (≤ window; faster than int64)
        best = np.fmax.reduce(self._mtie_max, axis=1)
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
        self._make_room(a, new.size)
        self._anchored = False
        self._anchor_gaps = None
        self._points = None
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
        if start_new // BLOCK > start_old // BLOCK:
            self._clear_blocks(start_old // BLOCK, start_new // BLOCK)
        head_end = np.minimum(b - m, (start_new // BLOCK + 1) * BLOCK)
        self._mtie_fold(np.maximum(start_new, a - m), b - m, start_new, head_end)

    def _make_room(self, a: int, n: int) -> None:
        """Before adding n slots at a: keep the window's slots at the front of the buffer."""
        used = a - self._base
        if used + n > self._room:
            start = max(0, a - self.window)
            keep = a - start
            self._buf[:keep] = self._buf[used - keep:used]
            self._base = start

    def _steady_plan(self, n: int) -> _Plan | None:
        """The plan of a fold of n slots if it is a steady-state one: the window was full,
        every tau's terms leaving and entering are whole runs, the window's first block
        and the new positions are apart, and the MDEV anchors are the window's ends."""
        a, w = self._total, self.window
        big = self.ms[-1]
        if a < w or n + 3 * big > w + 1 or n + big + BLOCK > w:
            return None
        if not self._anchored:
            new_j, old_j = self._anchor_j
            if not (np.array_equal(new_j, a - 3 * self._m) and bool((old_j == a - w).all())):
                return None
            self._anchored = True
        return _plan(w, self._m.size, n, a % BLOCK)

    def _fold_steady(self, new: FloatArray, plan: _Plan) -> None:
        """``_fold`` in the steady state: the same sums by a fixed number of numpy calls on
        the plan's templates.  The second differences that enter and leave OADEV are the
        ones the MDEV inner sums move by, so both come from one gather."""
        w, n, k = self.window, new.size, self._m.size
        a = self._total
        self._make_room(a, n)
        buf = self._buf
        at = a - self._base
        buf[at:at + n] = new
        self._total = a + n
        self._points = None
        x = np.take(buf, plan.x_off + (at + plan.cols))  # (side, 4, k, n)
        d = x[:, 2:] - 2.0 * x[:, 1:3]
        d += x[:, :2]  # (side, run, k, n): runs a − 3m, a − 2m; a − w, a − w + m
        if self._anchor_gaps is None:
            self._anchor_gaps = bool(self._anchor_bad.any())
        clean = not self._anchor_gaps and math.isfinite(d.sum())  # no gap in any term
        if not clean:
            self._anchor_gaps = None  # (known after the fold)
            bad = ~np.isfinite(d)
            d[bad] = 0.0
        # terms[0]: OADEV terms in (d(a − 2m + c)) and out (d(a − w + c)); terms[1]: MDEV
        # inner sums, anchor + cumulated moves, newest (in) and oldest (out).
        terms = np.empty((2, 2, k, n + 1))
        terms[0, :, :, 0] = 0.0
        terms[0, :, :, 1:] = d.reshape(4, k, n)[1:3]
        terms[1, :, :, 0] = self._anchor_s
        np.subtract(d[:, 1], d[:, 0], out=terms[1, :, :, 1:])
        np.cumsum(terms[1], axis=2, out=terms[1])
        self._anchor_s[:] = terms[1, :, :, n]
        self._anchor_j += n
        np.square(terms, out=terms)
        terms *= plan.terms
        if not clean:  # counts move; MDEV terms with a gap are out
            nbad = bad.reshape(4, k, n)[1:3].sum(axis=2)
            sb = np.empty((2, k, n + 1), dtype=np.int64)
            sb[:, :, 0] = self._anchor_bad
            np.subtract(bad[:, 1], bad[:, 0], out=sb[:, :, 1:], dtype=np.int64)
            np.cumsum(sb, axis=2, out=sb)
            self._anchor_bad[:] = sb[:, :, n]
            used = sb == 0
            used &= plan.terms[1]
            terms[1] *= used
            count = used.sum(axis=2)
            self._counts += (nbad[1] - nbad[0], count[0] - count[1])
        total = terms.sum(axis=3)
        self._sums += total[:, 0] - total[:, 1]
        # Least squares: the slots in (x[a + c]) and out (x[a − w + c]) are in the gather.
        slots = x.reshape(8, k * n)[3:5, :n]  # (m = 1: x[a + c] and x[a − w + c])
        t0 = a - self._epoch  # t of slot a
        if clean:
            # Σx and Σcx in and out; n, Σt and Σt² move by whole numbers (exact).
            (sx_in, scx_in), (sx_out, scx_out) = (slots[:, None] * plan.ls_c).sum(axis=2).tolist()
            st_in = n * t0 + n * (n - 1) // 2
            self._ls += (0.0, float(n * w), sx_in - sx_out, float(w * (2 * st_in - n * w)),
                         t0 * (sx_in - sx_out) + (scx_in - scx_out) + w * sx_out)
        else:
            ok = np.isfinite(slots)
            v = np.empty((2, 5, n))
            v[:, 0] = ok
            np.multiply(plan.ls_t + float(t0), ok, out=v[:, 1])
            np.copyto(v[:, 2], slots)
            v[:, 2][~ok] = 0.0
            np.multiply(v[:, 1], v[:, 1], out=v[:, 3])
            np.multiply(v[:, 1], v[:, 2], out=v[:, 4])
            sums = v.sum(axis=2)
            self._ls += sums[0] - sums[1]
        # MTIE: clear the blocks that left the window (first: the ring reuses their cells),
        # then the ranges of the new positions and of the head's.
        gone0, gone1 = (a - w) // BLOCK, (a + n - w) // BLOCK
        if gone1 > gone0:
            self._clear_blocks(gone0, gone1)
        self._mtie_steady(plan, a)

    def _clear_blocks(self, first: int, end: int) -> None:
        """Empty the MTIE block maxima of blocks [first, end) (gone from the window)."""
        lo, hi = first % self._blocks, end % self._blocks
        if lo < hi:  # (a slice: no index array)
            self._mtie_max[:, lo:hi] = np.nan
            self._mtie_valid[:, lo:hi] = 0
        else:
            cells = np.arange(first, end) % self._blocks
            self._mtie_max[:, cells] = np.nan
            self._mtie_valid[:, cells] = 0

    def _mtie_steady(self, plan: _Plan, a: int) -> None:
        """MTIE part of ``_fold_steady`` (the new slots in the buffer): the block summaries
        of the new slots' blocks, the ranges of every tau's new positions into the block
        maxima, and the head's (the window's first block) summarised anew.  See _Plan."""
        ring, k = self._blocks, self._m.size
        u0 = a // BLOCK
        head_cell = (u0 + plan.hb) % ring
        work = np.empty((2, plan.columns))
        gathered = plan.gather.size
        # (The head block may start up to BLOCK − 1 slots before the buffer: those negative
        # offsets read its end, and are never used.)
        np.take(self._buf, plan.gather + (u0 * BLOCK - self._base), out=work[0, :gathered])
        np.negative(work[0, :gathered], out=work[1, :gathered])
        blocks = work[:, plan.c_shared:gathered].reshape(2, -1, BLOCK)
        np.maximum.accumulate(blocks, axis=2, out=blocks)
        summary = work[:, plan.summary_col]
        cells = (u0 + plan.blocks) % ring
        bsum = self._bsum
        bsum[:, cells] = summary
        if plan.mid_pairs.size:
            np.maximum.reduceat(np.concatenate((bsum, bsum), axis=1), plan.mid_pairs + head_cell,
                                axis=1, out=work[:, plan.c_mid:plan.c_none])
        work[:, plan.c_none] = -np.inf
        valid, src = plan.short_len, 0
        for q in range(plan.levels - 1):  # level q + 1: runs of 2^(q+1) slots
            span, dst = 1 << q, plan.c_levels + q * plan.short_len
            np.maximum(work[:, src:src + valid - span], work[:, src + span:src + valid],
                       out=work[:, dst:dst + valid - span])
            valid, src = valid - span, dst
        g = np.take(work, plan.range_col, axis=1)  # (x / −x, 3, k, width)
        top = np.maximum(g[:, 0], g[:, 1])
        np.maximum(top, g[:, 2], out=top)
        ranges = np.empty(k * plan.width + 1)  # (one spare cell: the last reduceat index)
        ranges[-1] = np.nan
        np.add(top[0], top[1], out=ranges[:-1].reshape(k, plan.width))
        # Block maxima of the new positions; the head's best and count.
        maxima = np.fmax.reduceat(ranges, plan.seg_pairs)[::2]
        count = np.add.reduceat(np.isfinite(ranges), plan.seg_pairs, dtype=np.uint8)[::2]
        seg = plan.n_seg
        cells = plan.seg_row + (plan.seg_block + u0) % ring
        mtie_max = self._mtie_max.ravel()
        mtie_max[cells] = np.fmax(mtie_max[cells], maxima[:seg])
        self._mtie_valid.ravel()[cells] += count[:seg]
        if plan.n_head:
            self._mtie_max[:, head_cell] = maxima[seg:]  # (NaN when none is gap-free)
            self._mtie_valid[:, head_cell] = count[seg:]

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
            if x.size <= 2 * m:  # no term yet (x[:x.size − 2m] would count from the end)
                self._adev_sum[row] = self._mdev_sum[row] = 0.0
                self._adev_n[row] = self._mdev_n[row] = 0
                continue
            d2 = x[2 * m:] - 2.0 * x[m:x.size - m] + x[:x.size - 2 * m]
            ok = np.isfinite(d2)
            v = d2[ok]
            self._adev_sum[row], self._adev_n[row] = float(np.square(v).sum()), int(v.size)
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
            self._mdev_sum[row], self._mdev_n[row] = float(np.square(good).sum()), int(good.size)
            self._new_j[row] = start + terms - 1
            self._new_s[row], self._new_bad[row] = inner[-1], inner_bad[-1]
            self._old_j[row] = start
            self._old_s[row], self._old_bad[row] = inner[0], inner_bad[0]
        self._since_recompute = 0
        self._anchored = False  # (they are the window's ends: checked by the next fold)
        self._anchor_gaps = None
        self._points = None

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
            chunk = new[lo:lo + self._spare]
            plan = self._steady_plan(chunk.size)
            if plan is None:
                self._fold(chunk)
            else:
                self._fold_steady(chunk, plan)
        self._since_recompute += new.size
        if self._since_recompute >= self.window:
            self._recompute()

    # -- results --------------------------------------------------------------------------

    def points(self) -> list[StabilityPoint]:
        self.update()
        if self._points is None:
            self._points = self._make_points()
        return list(self._points)

    def _make_points(self) -> list[StabilityPoint]:
        mtie, mtie_n = self._mtie()
        # OADEV and MDEV for every tau at once: the operations of the float formulas
        # (NumPy's sqrt and division round as math's do); below MIN_TERMS terms: None.
        dev = (np.sqrt(np.maximum(self._sums, 0.0) / (2.0 * np.maximum(self._counts, 1)))
               / self._dev_scale)
        # (TDEV = tau / sqrt(3) · MDEV: the spacing cancels, so from the nominal MDEV.)
        tdev = dev[1:] * self._tdev_scale
        if self._spacing != self.tau0:
            dev = dev * (self.tau0 / self._spacing)
        values = np.concatenate((dev, tdev, mtie[None]))
        adev, mdev, tdev, mtie = values.tolist()
        (adev_n, mdev_n), mtie_n = self._counts.tolist(), mtie_n.tolist()
        return [_point(t, m, a if an >= MIN_TERMS else None, an,
                       md if mn >= MIN_TERMS else None, td if mn >= MIN_TERMS else None, mn,
                       mt if tn >= MIN_TERMS else None, tn)
                for t, m, a, an, md, td, mn, mt, tn in zip(
                    self._tau_list, self.ms, adev, adev_n, mdev, tdev, mdev_n, mtie, mtie_n,
                    strict=True)]

    def frequency_offset(self) -> float | None:
        """Least-squares slope of phase over the window (fractional frequency, s/s)."""
        self.update()
        n, st, sx, stt, stx = (float(v) for v in self._ls)
        if n < 3:
            return None
        denom = n * stt - st * st
        return (n * stx - st * sx) / denom / self._spacing if denom > 0 else None
