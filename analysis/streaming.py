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
    """Max and min of every window of w consecutive elements, in O(len) (van Herk/Gil-Werman)."""
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


class _TauState:
    """Running sums for one averaging factor m."""

    __slots__ = ("m", "adev_sum", "adev_n", "mdev_sum", "mdev_n", "ranges")

    def __init__(self, m: int, window: int) -> None:
        self.m = m
        self.adev_sum = 0.0
        self.adev_n = 0
        self.mdev_sum = 0.0
        self.mdev_n = 0
        # Range (max − min) of the window starting at each slot; NaN: none or skipped.
        self.ranges = np.full(window, np.nan)


class StreamingStability:
    """Sliding-window OADEV/MDEV/TDEV/MTIE at octave taus, O(1) work per sample per tau.

    ``append`` takes one grid slot (phase in seconds, NaN for a lost poll);
    ``update`` folds the appended slots in and returns the current points.
    """

    def __init__(self, tau0: float, window: int = DEFAULT_WINDOW,
                 max_m: int | None = None) -> None:
        if window < 4:
            raise ValueError("window must hold at least 4 samples")
        self.tau0 = tau0
        self.window = window
        self.max_m = max_m
        self.ms = octave_ms(window, max_m)
        self._x = np.full(window, np.nan)  # ring buffer, slot k at k % window
        self._total = 0  # slots ever folded in
        self._pending: list[float] = []
        self._reference: float | None = None  # subtracted from phase: keeps sums well scaled
        self._taus = [_TauState(m, window) for m in self.ms]
        self._since_recompute = 0

    # -- input --------------------------------------------------------------------

    def append(self, phase: float) -> None:
        """One grid slot: the phase (local − reference, seconds), or NaN for a gap."""
        if self._reference is None and math.isfinite(phase):
            self._reference = phase
        self._pending.append(phase)

    def reset(self) -> None:
        """Forget everything (after a clock step)."""
        self._x.fill(np.nan)
        self._total = 0
        self._pending = []
        self._reference = None
        self._taus = [_TauState(m, self.window) for m in self.ms]
        self._since_recompute = 0

    @property
    def count(self) -> int:
        """Slots in the window (including gaps), pending ones included."""
        return min(self._total + len(self._pending), self.window)

    def phase_window(self) -> FloatArray:
        """The window's phase in time order, pending slots folded in (seconds)."""
        self.update()
        n = min(self._total, self.window)
        start = self._total - n
        idx = np.arange(start, self._total) % self.window
        return self._x[idx] + (self._reference or 0.0)

    # -- folding in -----------------------------------------------------------------

    def _slots(self, lo: int, hi: int) -> FloatArray:
        """x for absolute slots [lo, hi), which must all be inside the ring."""
        idx = np.arange(lo, hi) % self.window
        return self._x[idx]

    def _adev_terms(self, m: int, lo: int, hi: int) -> tuple[float, int]:
        """Sum of squared second differences for terms starting at slots [lo, hi)."""
        if hi <= lo:
            return 0.0, 0
        x = self._slots(lo, hi + 2 * m)
        d2 = x[2 * m:] - 2.0 * x[m:-m] + x[:-2 * m]
        ok = np.isfinite(d2)
        v = d2[ok]
        return float(np.dot(v, v)), int(v.size)

    def _mdev_terms(self, m: int, lo: int, hi: int) -> tuple[float, int]:
        """Sum of squared m-sums of second differences for terms starting at [lo, hi)."""
        if hi <= lo:
            return 0.0, 0
        x = self._slots(lo, hi + 3 * m - 1)
        d2 = x[2 * m:] - 2.0 * x[m:-m] + x[:-2 * m]  # slots lo .. hi + m − 2
        bad = ~np.isfinite(d2)
        s = _moving_sum(np.where(bad, 0.0, d2), m)
        nbad = _moving_sum(bad.astype(np.float64), m)
        v = s[nbad == 0]
        return float(np.dot(v, v)), int(v.size)

    def _ranges(self, m: int, lo: int, hi: int) -> FloatArray:
        """max − min of x over slots [k, k+m] for k in [lo, hi); NaN where a gap is touched."""
        x = self._slots(lo, hi + m)
        hi_v, lo_v = _sliding_extrema(x, m + 1)
        bad = _moving_sum((~np.isfinite(x)).astype(np.float64), m + 1) > 0
        r = hi_v - lo_v
        r[bad] = np.nan
        return r

    def _fold(self, new: FloatArray) -> None:
        """Add len(new) slots: retire the terms that lose their first slot, then add the
        terms the new slots complete."""
        w = self.window
        a = self._total
        b = a + new.size
        start_old = max(0, a - w)
        start_new = max(0, b - w)
        # Terms starting at [start_old, start_new) leave the window.  They were added
        # only if complete before this batch (all their slots < a); read them before
        # the ring slots are overwritten.
        for t in self._taus:
            m = t.m
            s, n = self._adev_terms(m, start_old, min(start_new, a - 2 * m))
            t.adev_sum -= s
            t.adev_n -= n
            s, n = self._mdev_terms(m, start_old, min(start_new, a - 3 * m + 1))
            t.mdev_sum -= s
            t.mdev_n -= n
            if start_new > start_old:
                t.ranges[np.arange(start_old, start_new) % w] = np.nan
        self._x[np.arange(a, b) % w] = new
        self._total = b
        # Terms completed by the new slots: those ending at a slot in [a, b).
        for t in self._taus:
            m = t.m
            s, n = self._adev_terms(m, max(start_new, a - 2 * m), b - 2 * m)
            t.adev_sum += s
            t.adev_n += n
            s, n = self._mdev_terms(m, max(start_new, a - 3 * m + 1), b - 3 * m + 1)
            t.mdev_sum += s
            t.mdev_n += n
            lo, hi = max(start_new, a - m), b - m
            if hi > lo:
                t.ranges[np.arange(lo, hi) % w] = self._ranges(m, lo, hi)

    def _recompute(self) -> None:
        """All sums from the buffer, from scratch (bounds rounding error)."""
        start = max(0, self._total - self.window)
        b = self._total
        for t in self._taus:
            m = t.m
            t.adev_sum, t.adev_n = self._adev_terms(m, start, b - 2 * m)
            t.mdev_sum, t.mdev_n = self._mdev_terms(m, start, b - 3 * m + 1)
        self._since_recompute = 0

    def update(self) -> None:
        """Fold the appended slots in (numpy batch work: call off the event loop)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        new = np.asarray(pending, dtype=np.float64) - (self._reference or 0.0)
        # Batches larger than the window only matter for their last `window` slots.
        for lo in range(0, new.size, self.window):
            self._fold(new[lo:lo + self.window])
        self._since_recompute += new.size
        if self._since_recompute >= self.window:
            self._recompute()

    # -- results --------------------------------------------------------------------------

    def points(self) -> list[StabilityPoint]:
        self.update()
        out = []
        for t in self._taus:
            m, tau = t.m, t.m * self.tau0
            adev = mdev = tdev = mtie = None
            if t.adev_n >= MIN_TERMS:
                adev = math.sqrt(max(t.adev_sum, 0.0) / (2.0 * t.adev_n)) / tau
            if t.mdev_n >= MIN_TERMS:
                mdev = math.sqrt(max(t.mdev_sum, 0.0) / (2.0 * t.mdev_n)) / (m * tau)
                tdev = tau / math.sqrt(3.0) * mdev
            valid = np.isfinite(t.ranges)
            mtie_n = int(valid.sum())
            if mtie_n >= MIN_TERMS:
                mtie = float(t.ranges[valid].max())
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
