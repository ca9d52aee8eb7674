"""Allan-family deviations: ADEV, OADEV, MDEV, TDEV, HDEV, OHDEV, TOTDEV.

Call shape as allantools: ``f(data, rate=1.0, data_type="phase", taus="octave")``
returning ``(taus, devs, errs, ns)``; ``errs = devs / sqrt(ns)`` as allantools.

Every deviation is O(N) per tau and O(N) memory. Formulas are from NIST SP 1065
(W. J. Riley, "Handbook of Frequency Stability Analysis", 2008); equation
numbers below refer to it. Second and third differences are built from lag-m
first differences (x[i+m] - x[i]), never from a cumulative sum of raw phase.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._prepare import (
    FloatArray,
    IntArray,
    Phase,
    TausSpec,
    averaging_factors,
    finish,
    to_phase,
)

Result = tuple[FloatArray, FloatArray, FloatArray, FloatArray]


def _sumsq(v: FloatArray, ok: npt.NDArray[np.bool_] | None) -> tuple[float, int]:
    """Sum of squares of the valid terms and their count."""
    if ok is not None:
        v = v[ok]
    return float(np.dot(v, v)), int(v.size)


def _lagdiff(x: FloatArray, m: int, out: FloatArray | None = None) -> FloatArray:
    """d[i] = x[i+m] - x[i]."""
    n = x.size - m
    if out is None:
        return np.subtract(x[m:], x[:n])
    return np.subtract(x[m:], x[:n], out=out[:n])


# --------------------------------------------------------------------------
# cores: return (dev, n) per m; shared by the public functions and the table
# --------------------------------------------------------------------------


def _allan_core(p: Phase, ms: IntArray, overlapping: bool) -> tuple[FloatArray, FloatArray]:
    """ADEV (SP 1065 eq. 7) / OADEV (eq. 11): sigma^2 = <(x[i+2m]-2x[i+m]+x[i])^2> / (2 tau^2)."""
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    buf = np.empty(x.size)
    buf2 = np.empty(x.size)
    for k, m in enumerate(ms):
        m = int(m)
        if x.size <= 2 * m:
            continue
        if overlapping:
            d = _lagdiff(x, m, buf)  # x[i+m] - x[i]
            v = _lagdiff(d, m, buf2)  # second difference at every i
            starts = np.arange(v.size, dtype=np.int64) if p.has_gaps else None
        else:
            xs = x[::m]  # phase at tau-spaced points
            v = np.diff(xs, 2)
            starts = (np.arange(v.size, dtype=np.int64) * m) if p.has_gaps else None
        ok = p.points_ok(starts, (0, m, 2 * m)) if starts is not None else None
        s, n = _sumsq(v, ok)
        ns[k] = n
        if n:
            tau = m * p.tau0
            devs[k] = np.sqrt(s / (2.0 * n)) / tau
    return devs, ns


def _hadamard_core(p: Phase, ms: IntArray, overlapping: bool) -> tuple[FloatArray, FloatArray]:
    """HDEV (SP 1065 eq. 18) / OHDEV (eq. 20): third differences of phase, / (6 tau^2)."""
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    b1 = np.empty(x.size)
    b2 = np.empty(x.size)
    for k, m in enumerate(ms):
        m = int(m)
        if x.size <= 3 * m:
            continue
        if overlapping:
            d = _lagdiff(x, m, b1)
            d2 = _lagdiff(d, m, b2)
            v = _lagdiff(d2, m, b1)  # b1 (d) is no longer needed
            starts = np.arange(v.size, dtype=np.int64) if p.has_gaps else None
        else:
            v = np.diff(x[::m], 3)
            starts = (np.arange(v.size, dtype=np.int64) * m) if p.has_gaps else None
        ok = p.points_ok(starts, (0, m, 2 * m, 3 * m)) if starts is not None else None
        s, n = _sumsq(v, ok)
        ns[k] = n
        if n:
            devs[k] = np.sqrt(s / (6.0 * n)) / (m * p.tau0)
    return devs, ns


def _mdev_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """MDEV, SP 1065 eq. 14.

    Term j is sum_{i=j}^{j+m-1} (x[i+2m] - 2x[i+m] + x[i]): a moving sum of the
    second differences v, taken from a running (cumulative) sum of v. v is
    small and zero-mean, so the running sum stays small and loses no digits.
    """
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    b1 = np.empty(x.size)
    b2 = np.empty(x.size)
    c = np.empty(x.size + 1)
    for k, m in enumerate(ms):
        m = int(m)
        nterms = x.size - 3 * m + 1
        if nterms < 1:
            continue
        d = _lagdiff(x, m, b1)
        v = _lagdiff(d, m, b2)  # len N - 2m
        cs = c[: v.size + 1]
        cs[0] = 0.0
        np.cumsum(v, out=cs[1:])
        t = np.subtract(cs[m : m + nterms], cs[:nterms], out=b1[:nterms])
        ok = p.span_ok(np.arange(nterms, dtype=np.int64), 3 * m) if p.has_gaps else None
        s, n = _sumsq(t, ok)
        ns[k] = n
        if n:
            tau = m * p.tau0
            devs[k] = np.sqrt(s / (2.0 * n)) / (m * tau)
    return devs, ns


def _totdev_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """Raw TOTDEV, SP 1065 eq. 25 (no bias correction).

    The phase is extended at both ends by odd reflection,
    x*[1-j] = 2 x[1] - x[1+j] and x*[N+j] = 2 x[N] - x[N-j] (j = 1..N-2), and
    the N-2 second differences centred on the original interior points are used
    at every m.
    """
    x = p.x
    n = x.size
    if n < 3:
        return np.zeros(ms.size), np.zeros(ms.size)
    ext = np.empty(3 * n - 4)
    ext[: n - 2] = 2.0 * x[0] - x[n - 2 : 0 : -1]
    ext[n - 2 : 2 * n - 2] = x
    ext[2 * n - 2 :] = 2.0 * x[-1] - x[-2:0:-1]
    bad_ext = None
    if p.bad is not None:
        b = p.bad
        bad_ext = np.empty(3 * n - 4, dtype=bool)
        bad_ext[: n - 2] = b[0] | b[n - 2 : 0 : -1]
        bad_ext[n - 2 : 2 * n - 2] = b
        bad_ext[2 * n - 2 :] = b[-1] | b[-2:0:-1]
    centre0 = n - 1  # index in ext of original point 1 (0-based), first centre
    nterms = n - 2
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    for k, m in enumerate(ms):
        m = int(m)
        if m > n - 2:
            continue
        seg = ext[centre0 - m : centre0 + nterms + m]
        d = seg[m:] - seg[:-m]
        v = d[m:] - d[:-m]
        ok = None
        if bad_ext is not None:
            bs = bad_ext[centre0 - m : centre0 + nterms + m]
            ok = ~(bs[: nterms] | bs[m : m + nterms] | bs[2 * m : 2 * m + nterms])
        s, cnt = _sumsq(v, ok)
        ns[k] = cnt
        if cnt:
            devs[k] = np.sqrt(s / (2.0 * cnt)) / (m * p.tau0)
    return devs, ns


# --------------------------------------------------------------------------
# bias corrections (need the noise type of each point)
# --------------------------------------------------------------------------

# TOTVAR bias, SP 1065 section 5.2.11: E[Totvar] = Avar (1 - a tau/T),
# a = 0 (white FM and PM), 1/(3 ln 2) (flicker FM), 0.750 (random-walk FM).
_TOTVAR_A = {2: 0.0, 1: 0.0, 0: 0.0, -1: 1.0 / (3.0 * np.log(2.0)), -2: 0.750}


def totvar_bias(alpha: int, m: int, n_phase: int) -> float:
    """Ratio E[Totvar]/Avar for noise alpha at tau = m tau0, T = (N-1) tau0."""
    a = _TOTVAR_A.get(int(np.clip(alpha, -2, 2)), 0.0)
    return 1.0 - a * m / (n_phase - 1)


def _check_total_gaps(p: Phase, name: str) -> None:
    if p.seg is not None:
        raise ValueError(
            f"{name}: frequency data with gaps (NaN) is not supported by the reflected "
            "total estimators; pass phase data, or split the series at the gap"
        )


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def _run(stat: str, core, data, rate, data_type, taus, **kw) -> tuple[IntArray, FloatArray, FloatArray, Phase]:  # type: ignore[no-untyped-def]
    p = to_phase(data, rate, data_type)
    ms = averaging_factors(p.n, rate, taus, stat, **kw)
    devs, ns = core(p, ms)
    return ms, devs, ns, p


def adev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Allan deviation (non-overlapping), SP 1065 eq. 7."""
    ms, devs, ns, p = _run("adev", lambda p, ms: _allan_core(p, ms, False), data, rate, data_type, taus)
    return finish(ms * p.tau0, devs, ns)


def oadev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Overlapping Allan deviation, SP 1065 eq. 11."""
    ms, devs, ns, p = _run("oadev", lambda p, ms: _allan_core(p, ms, True), data, rate, data_type, taus)
    return finish(ms * p.tau0, devs, ns)


def mdev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Modified Allan deviation, SP 1065 eq. 14."""
    ms, devs, ns, p = _run("mdev", _mdev_core, data, rate, data_type, taus)
    return finish(ms * p.tau0, devs, ns)


def tdev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Time deviation, SP 1065 eq. 15: TDEV = tau / sqrt(3) * MDEV (seconds)."""
    ms, devs, ns, p = _run("tdev", _mdev_core, data, rate, data_type, taus)
    tau = ms * p.tau0
    return finish(tau, devs * tau / np.sqrt(3.0), ns)


def hdev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Hadamard deviation (non-overlapping), SP 1065 eq. 18."""
    ms, devs, ns, p = _run("hdev", lambda p, ms: _hadamard_core(p, ms, False), data, rate, data_type, taus)
    return finish(ms * p.tau0, devs, ns)


def ohdev(
    data: npt.ArrayLike, rate: float = 1.0, data_type: str = "phase", taus: TausSpec = "octave"
) -> Result:
    """Overlapping Hadamard deviation, SP 1065 eq. 20."""
    ms, devs, ns, p = _run("ohdev", lambda p, ms: _hadamard_core(p, ms, True), data, rate, data_type, taus)
    return finish(ms * p.tau0, devs, ns)


def totdev(
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
    *,
    bias_correction: bool = True,
    alpha: int | None = None,
) -> Result:
    """Total deviation, SP 1065 eq. 25, bias-corrected as SP 1065 section 5.2.11.

    The correction divides Totvar by 1 - a tau/T for flicker and random-walk
    FM (allantools omits it); the noise type of each point is identified from
    the data unless ``alpha`` is given. ``bias_correction=False`` gives the raw
    estimator (what allantools returns).
    """
    p = to_phase(data, rate, data_type)
    _check_total_gaps(p, "totdev")
    ms = averaging_factors(p.n, rate, taus, "totdev")
    devs, ns = _totdev_core(p, ms)
    if bias_correction:
        from .confidence import noise_types

        alphas = noise_types(p, ms, "totdev") if alpha is None else [alpha] * ms.size
        for k, m in enumerate(ms):
            devs[k] /= np.sqrt(totvar_bias(int(alphas[k]), int(m), p.n))
    return finish(ms * p.tau0, devs, ns)
