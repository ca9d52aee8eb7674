"""MTIE and TIE-RMS over all windows.

TIE over a window of m + 1 phase points is max - min of the phase in it
(ITU-T G.810; what allantools and Stable32 compute). MTIE(m) is its maximum
over all N - m windows. Window extrema come from a doubling (sparse-table)
construction: level k holds the extrema of every 2^k + 1-point window, level
k + 1 follows from two level-k entries, and a window of any length is covered
by two overlapping power-of-two windows. For increasing m only the current
level is kept, so time is O(N log N) for all taus together and memory O(N).

Both use the phase as measured (a frequency offset is real time error); only a
constant is removed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._prepare import FloatArray, IntArray, Phase, TausSpec, averaging_factors, finish, to_phase
from .stability import Result


def _window_ok(p: Phase, m: int, nwin: int) -> npt.NDArray[np.bool_] | None:
    return p.span_ok(np.arange(nwin, dtype=np.int64), m + 1)


def _mtie_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    x = p.x
    n = x.size
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    # level k: hi[i] = max(x[i : i + 2^k + 1]), valid for i < n - 2^k
    k_cur = 0
    span = 1
    hi = np.maximum(x[:-1], x[1:])
    lo = np.minimum(x[:-1], x[1:])
    for idx, m in enumerate(ms):
        m = int(m)
        if m >= n:
            continue
        while span * 2 <= m:  # advance to the largest span <= m
            nxt = n - 2 * span
            hi = np.maximum(hi[:nxt], hi[span : span + nxt])
            lo = np.minimum(lo[:nxt], lo[span : span + nxt])
            span *= 2
            k_cur += 1
        nwin = n - m
        shift = m - span  # window [i, i+m] = [i, i+span] u [i+shift, i+shift+span]
        wmax = np.maximum(hi[:nwin], hi[shift : shift + nwin])
        wmin = np.minimum(lo[:nwin], lo[shift : shift + nwin])
        tie = wmax - wmin
        ok = _window_ok(p, m, nwin)
        if ok is not None:
            tie = tie[ok]
        ns[idx] = tie.size
        if tie.size:
            devs[idx] = float(tie.max())
    return devs, ns


def _tierms_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """TIE-RMS(m) = sqrt(mean over i of (x[i+m] - x[i])^2), as allantools defines it."""
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    buf = np.empty(x.size)
    for idx, m in enumerate(ms):
        m = int(m)
        nwin = x.size - m
        if nwin < 1:
            continue
        d = np.subtract(x[m:], x[:nwin], out=buf[:nwin])
        if p.has_gaps:
            ok = p.points_ok(np.arange(nwin, dtype=np.int64), (0, m))
            d = d[ok]
        ns[idx] = d.size
        if d.size:
            devs[idx] = np.sqrt(float(np.dot(d, d)) / d.size)
    return devs, ns


def mtie(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Maximum time interval error over windows of tau = m tau0 (m + 1 points)."""
    p = to_phase(data, rate, data_type, remove_ramp=False)
    ms = averaging_factors(p.n, rate, taus, "mtie")
    devs, ns = _mtie_core(p, ms)
    return finish(ms * p.tau0, devs, ns)


def tierms(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """RMS time interval error; errs = dev / sqrt(n) (allantools returns 0)."""
    p = to_phase(data, rate, data_type, remove_ramp=False)
    ms = averaging_factors(p.n, rate, taus, "tierms")
    devs, ns = _tierms_core(p, ms)
    return finish(ms * p.tau0, devs, ns)
