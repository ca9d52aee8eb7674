"""Input handling shared by every statistic: phase conversion, gaps, tau lists.

Internally every statistic works on *phase* x (seconds) sampled every tau0.
Gaps (NaN) are kept as two masks instead of NaNs so that vectorised sums stay
finite; each statistic then skips exactly the terms whose support touches a gap:

* ``bad[k]``  -- phase point k is missing (NaN in phase input);
* ``seg[k]``  -- number of missing *frequency* samples before phase point k
  (NaN in frequency input).  A phase difference x[j] - x[i] is defined only
  when ``seg[i] == seg[j]``: a missing y_k leaves the phase after it offset by
  an unknown constant.

Missing points are filled (linear interpolation / zero frequency) so that the
filled series has no large jumps; terms that use a filled value are discarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TausSpec = str | Sequence[float] | npt.NDArray[np.floating]

# Stable32 stop ratios: the largest averaging factor is N / ratio, N the number
# of phase points (W. J. Riley, "The Evolution of Frequency Stability Analysis
# Software", Table III).
STOP_RATIO: dict[str, float] = {
    "adev": 5,
    "oadev": 4,
    "mdev": 4,
    "tdev": 4,
    "hdev": 5,
    "ohdev": 4,
    "totdev": 2,
    "mtie": 2,
    "tierms": 4,
    "theo1": 1,
    "mtotdev": 2,
    "ttotdev": 2,
    "htotdev": 3,
}


@dataclass
class Phase:
    """Phase series ready for the estimators (see module docstring)."""

    x: FloatArray  # filled phase, seconds, referenced to its first valid point
    bad: BoolArray | None  # missing phase points, None when there are none
    seg: IntArray | None  # frequency-gap counter per phase point, None if none
    tau0: float

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def has_gaps(self) -> bool:
        return self.bad is not None or self.seg is not None

    def bad_count(self) -> IntArray | None:
        """Prefix count of missing points: c[j] - c[i] = missing in [i, j)."""
        if self.bad is None:
            return None
        c = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.bad, out=c[1:])
        return c

    def span_ok(self, starts: IntArray, length: int) -> BoolArray | None:
        """Validity of the terms whose support is x[s : s + length] for s in starts."""
        if not self.has_gaps:
            return None
        ok = np.ones(starts.size, dtype=bool)
        c = self.bad_count()
        if c is not None:
            ok &= c[starts + length] == c[starts]
        if self.seg is not None:
            ok &= self.seg[starts + length - 1] == self.seg[starts]
        return ok

    def points_ok(self, starts: IntArray, offsets: Sequence[int]) -> BoolArray | None:
        """Validity of terms using only the points x[s + o] for o in offsets."""
        if not self.has_gaps:
            return None
        ok = np.ones(starts.size, dtype=bool)
        if self.bad is not None:
            for o in offsets:
                ok &= ~self.bad[starts + o]
        if self.seg is not None:
            ok &= self.seg[starts + max(offsets)] == self.seg[starts + min(offsets)]
        return ok


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number of samples per second, got {rate!r}")
    return rate


def to_phase(
    data: npt.ArrayLike, rate: float, data_type: str, *, remove_ramp: bool = True
) -> Phase:
    """Convert input to a :class:`Phase`.

    ``remove_ramp`` removes a linear phase ramp (a constant frequency offset)
    before anything is summed. Every deviation except MTIE/TIE is invariant to
    it mathematically; numerically it keeps the phase values small, so second
    differences and running sums do not cancel digits (a 1e-8 frequency offset
    over 1e6 samples would otherwise cost ~6 significant digits).
    MTIE and TIE-RMS see the frequency offset as real time error: they call
    this with ``remove_ramp=False``.
    """
    rate = check_rate(rate)
    tau0 = 1.0 / rate
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"data must be one-dimensional, got shape {arr.shape}")
    if data_type == "phase":
        return _from_phase(arr, tau0, remove_ramp)
    if data_type == "freq":
        return _from_freq(arr, tau0, remove_ramp)
    raise ValueError(f"data_type must be 'phase' or 'freq', got {data_type!r}")


# elements per block of the element-wise passes below: the temporaries stay in
# cache, so a pass over the input costs one read and one write of memory
_BLOCK = 1 << 15


def _all_finite(a: FloatArray) -> bool:
    """True when a has no NaN or inf: one summing pass (NaN and inf propagate).

    A finite array whose sum overflows is reported as not finite; callers then
    take their general path, which checks element by element.
    """
    return bool(np.isfinite(np.add.reduce(a)))


def _referenced(x: FloatArray, first: int, slope: float | None) -> FloatArray:
    """(x - x[first]) - slope * (i - first), block by block (same arithmetic as whole-array)."""
    out = np.empty(x.size)
    x0 = x[first]
    for a in range(0, x.size, _BLOCK):
        e = min(x.size, a + _BLOCK)
        seg = np.subtract(x[a:e], x0, out=out[a:e])
        if slope is not None:
            ramp = np.arange(a - first, e - first, dtype=np.float64)
            ramp *= slope
            seg -= ramp
    return out


def _from_phase(x: FloatArray, tau0: float, remove_ramp: bool) -> Phase:
    if x.size >= 2 and _all_finite(x):
        first, last = 0, x.size - 1
        slope = (x[last] - x[first]) / (last - first) if remove_ramp else None
        return Phase(x=_referenced(x, first, slope), bad=None, seg=None, tau0=tau0)
    good = np.isfinite(x)
    if good.sum() < 2:
        raise ValueError("need at least two valid phase points")
    idx = np.flatnonzero(good)
    first, last = idx[0], idx[-1]
    # Reference to the first valid point (no large offset in any sum); with
    # remove_ramp also take out the line through the first and last points.
    slope = None
    if remove_ramp and last > first:
        slope = (x[last] - x[first]) / (last - first)
    out = _referenced(x, int(first), slope)
    bad: BoolArray | None = None
    if not good.all():
        bad = ~good
        out[bad] = np.interp(np.flatnonzero(bad), idx, out[idx])
    return Phase(x=out, bad=bad, seg=None, tau0=tau0)


def _from_freq(y: FloatArray, tau0: float, remove_ramp: bool) -> Phase:
    if y.size >= 1 and _all_finite(y):
        good = None
        yy = y - np.mean(y) if remove_ramp else y  # a frequency offset is a phase ramp
    else:
        good = np.isfinite(y)
        if good.sum() < 1:
            raise ValueError("need at least one valid frequency point")
        yy = y
        if remove_ramp:
            yy = y - np.mean(y[good])
    seg: IntArray | None = None
    if good is not None and not good.all():
        yy = np.where(good, yy, 0.0)
        seg = np.zeros(y.size + 1, dtype=np.int64)
        np.cumsum(~good, out=seg[1:])
    x = np.empty(y.size + 1, dtype=np.float64)
    x[0] = 0.0
    np.cumsum(yy, out=x[1:])
    x[1:] *= tau0
    return Phase(x=x, bad=None, seg=seg, tau0=tau0)


def averaging_factors(
    n_phase: int,
    rate: float,
    taus: TausSpec,
    stat: str,
    *,
    even: bool = False,
    max_m: int | None = None,
) -> IntArray:
    """Averaging factors m (tau = m * tau0) for a statistic, sorted and unique.

    "octave": 1, 2, 4, ...; "decade": 1, 2, 4, 10, 20, 40, ...; "all": every m;
    or a sequence of taus in seconds (rounded to the nearest m, as allantools).
    Then cut at N / stop-ratio (Stable32) and at ``max_m``.
    """
    rate = check_rate(rate)
    limit = int(np.floor(n_phase / STOP_RATIO[stat]))
    if max_m is not None:
        limit = min(limit, max_m)
    if isinstance(taus, str):
        if taus == "all":
            m = np.arange(1, max(limit, 0) + 1, dtype=np.int64)
        elif taus == "octave":
            top = int(np.floor(np.log2(max(n_phase, 1))))
            m = 2 ** np.arange(0, top + 1, dtype=np.int64)
        elif taus == "decade":
            top = int(np.floor(np.log10(max(n_phase, 1))))
            m = np.array(
                [k * 10**d for d in range(top + 1) for k in (1, 2, 4)], dtype=np.int64
            )
        else:
            raise ValueError(f"taus must be 'octave', 'decade', 'all' or a list, got {taus!r}")
    else:
        t = np.asarray(taus, dtype=np.float64).ravel()
        if t.size == 0:
            return averaging_factors(n_phase, rate, "octave", stat, even=even, max_m=max_m)
        if not np.all(np.isfinite(t)) or np.any(t <= 0):
            raise ValueError("taus must be positive numbers of seconds")
        m = np.rint(t * rate).astype(np.int64)
        m = m[m >= 1]
    m = m[(m >= 1) & (m <= limit)]
    if m.size > 1 and np.any(m[1:] <= m[:-1]):  # generated lists are sorted already
        m = np.unique(m)
    if even:
        m = m[m % 2 == 0]
    return m


def finish(
    taus: FloatArray, devs: FloatArray, ns: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Drop points from fewer than two terms; errs = dev / sqrt(n) (allantools)."""
    keep = ns >= 2
    taus, devs, ns = taus[keep], devs[keep], ns[keep]
    errs = devs / np.sqrt(ns)
    return taus, devs, errs, ns
