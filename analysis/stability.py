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


_BLOCK = 1 << 15  # terms per block: the block's temporaries stay in cache


def _diff_sumsq(x: FloatArray, lag: int, order: int) -> tuple[float, int]:
    """Sum of squares of the order-th lag differences of x, and their number.

    Same arithmetic as nested differences (d = x[lag:] - x[:-lag], then d of d),
    computed block by block: each block needs the first differences at its
    ``order`` offsets, then differences them in place, so memory is read about
    once per term instead of once per nesting level. ``x`` may be a strided view
    (non-overlapping estimators pass x[::m] with lag 1).
    """
    nv = x.size - order * lag
    if nv <= 0:
        return 0.0, 0
    c = min(_BLOCK, nv)
    bufs = np.empty((order, c))
    total = 0.0
    for a in range(0, nv, c):
        e = min(nv, a + c)
        n = e - a
        lv = [
            np.subtract(x[a + (j + 1) * lag : e + (j + 1) * lag], x[a + j * lag : e + j * lag],
                        out=bufs[j, :n])
            for j in range(order)
        ]
        for k in range(order - 1, 0, -1):
            for j in range(k):
                np.subtract(lv[j + 1], lv[j], out=lv[j])
        total += float(np.dot(lv[0], lv[0]))
    return total, nv


# --------------------------------------------------------------------------
# cores: return (dev, n) per m; shared by the public functions and the table
# --------------------------------------------------------------------------


def _allan_core(p: Phase, ms: IntArray, overlapping: bool) -> tuple[FloatArray, FloatArray]:
    """ADEV (SP 1065 eq. 7) / OADEV (eq. 11): sigma^2 = <(x[i+2m]-2x[i+m]+x[i])^2> / (2 tau^2)."""
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    buf = np.empty(x.size) if p.has_gaps else None
    buf2 = np.empty(x.size) if p.has_gaps else None
    for k, m in enumerate(ms):
        m = int(m)
        if x.size <= 2 * m:
            continue
        if not p.has_gaps:
            s, n = _diff_sumsq(x, m, 2) if overlapping else _diff_sumsq(x[::m], 1, 2)
        else:
            if overlapping:
                d = _lagdiff(x, m, buf)  # x[i+m] - x[i]
                v = _lagdiff(d, m, buf2)  # second difference at every i
                starts = np.arange(v.size, dtype=np.int64)
            else:
                v = np.diff(x[::m], 2)  # second differences of the tau-spaced phase
                starts = np.arange(v.size, dtype=np.int64) * m
            s, n = _sumsq(v, p.points_ok(starts, (0, m, 2 * m)))
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
    b1 = np.empty(x.size) if p.has_gaps else None
    b2 = np.empty(x.size) if p.has_gaps else None
    for k, m in enumerate(ms):
        m = int(m)
        if x.size <= 3 * m:
            continue
        if not p.has_gaps:
            s, n = _diff_sumsq(x, m, 3) if overlapping else _diff_sumsq(x[::m], 1, 3)
        else:
            if overlapping:
                d = _lagdiff(x, m, b1)
                d2 = _lagdiff(d, m, b2)
                v = _lagdiff(d2, m, b1)  # b1 (d) is no longer needed
                starts = np.arange(v.size, dtype=np.int64)
            else:
                v = np.diff(x[::m], 3)
                starts = np.arange(v.size, dtype=np.int64) * m
            s, n = _sumsq(v, p.points_ok(starts, (0, m, 2 * m, 3 * m)))
        ns[k] = n
        if n:
            devs[k] = np.sqrt(s / (6.0 * n)) / (m * p.tau0)
    return devs, ns


def _running_v(x: FloatArray, m: int, out: FloatArray) -> FloatArray:
    """a[0] = 0, a[j+1] = a[j] + v[j], v[i] = (x[i+2m] - x[i+m]) - (x[i+m] - x[i]).

    Built block by block (v of a block stays in cache; each block's running sum
    continues from the previous block's last value).
    """
    nv = x.size - 2 * m
    a = out[: nv + 1]
    a[0] = 0.0
    c = min(_BLOCK, nv)
    b1 = np.empty(c)
    b2 = np.empty(c)
    for s0 in range(0, nv, c):
        e = min(nv, s0 + c)
        n = e - s0
        v = np.subtract(x[s0 + 2 * m : e + 2 * m], x[s0 + m : e + m], out=b1[:n])
        v -= np.subtract(x[s0 + m : e + m], x[s0:e], out=b2[:n])
        seg = a[s0 + 1 : e + 1]
        np.cumsum(v, out=seg)
        seg += a[s0]
    return a


def _mdev_sumsq_pow2(x: FloatArray, m: int) -> tuple[float, int]:
    """Sum of squares of the MDEV terms t_j = v_j + ... + v_{j+m-1}, m a power of two.

    Block by block: v over the block and its m - 1 successors, then log2(m)
    halvings w[i] += w[i + width] (a pairwise summation: no running sum, and
    rounding grows only with log m), all in cache.
    """
    nterms = x.size - 3 * m + 1
    c = min(_BLOCK, nterms)
    b1 = np.empty(c + m - 1)
    b2 = np.empty(c + m - 1)
    total = 0.0
    for a in range(0, nterms, c):
        e = min(nterms, a + c)
        ln = e - a + m - 1
        w = np.subtract(x[a + 2 * m : a + 2 * m + ln], x[a + m : a + m + ln], out=b1[:ln])
        w -= np.subtract(x[a + m : a + m + ln], x[a : a + ln], out=b2[:ln])
        other = b2
        width = 1
        while width < m:
            ln -= width
            w = np.add(w[:ln], w[width : width + ln], out=other[:ln])
            other = b1 if other is b2 else b2
            width *= 2
        total += float(np.dot(w, w))
    return total, nterms


def _mdev_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """MDEV, SP 1065 eq. 14.

    Term j is sum_{i=j}^{j+m-1} (x[i+2m] - 2x[i+m] + x[i]): a moving sum of the
    second differences v, taken from a running (cumulative) sum of v. v is
    small and zero-mean, so the running sum stays small and loses no digits
    (a cumulative sum of raw phase would carry its offset and excursions).
    """
    x = p.x
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    buf = np.empty(x.size + 1)
    for k, m in enumerate(ms):
        m = int(m)
        nterms = x.size - 3 * m + 1
        if nterms < 1:
            continue
        if not p.has_gaps and m & (m - 1) == 0 and m <= _BLOCK // 4:
            s, n = _mdev_sumsq_pow2(x, m)
        elif not p.has_gaps:
            s, n = _diff_sumsq(_running_v(x, m, buf), m, 1)
        else:
            a = _running_v(x, m, buf)  # len N - 2m + 1
            t = np.subtract(a[m : m + nterms], a[:nterms])
            s, n = _sumsq(t, p.span_ok(np.arange(nterms, dtype=np.int64), 3 * m))
        ns[k] = n
        if n:
            tau = m * p.tau0
            devs[k] = np.sqrt(s / (2.0 * n)) / (m * tau)
    return devs, ns


def _extended(x: FloatArray, k0: int, count: int) -> FloatArray:
    """x*[k0 : k0 + count] of the odd-reflected phase (SP 1065 eq. 25).

    x*[-j] = 2 x[0] - x[j] and x*[N-1+j] = 2 x[N-1] - x[N-1-j], taken as three
    slices (reflected ones reversed), not gathered point by point.
    """
    last = x.size - 1
    k1 = k0 + count
    parts = []
    if k0 < 0:  # k in [k0, min(k1, 0)): x[-k] reversed
        hi = min(k1, 0)
        parts.append(2.0 * x[0] - x[-k0 : -hi : -1] if hi < 0 else 2.0 * x[0] - x[-k0:0:-1])
    lo, hi = max(k0, 0), min(k1, last + 1)
    if lo < hi:
        parts.append(x[lo:hi])
    if k1 > last + 1:  # k in [max(k0, N), k1): x[2(N-1) - k]
        lo = max(k0, last + 1)
        a, b = 2 * last - lo, 2 * last - k1  # indices a down to b + 1
        parts.append(2.0 * x[last] - x[a : b if b >= 0 else None : -1])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _reflected_points(
    p: Phase, centres: IntArray, m: int
) -> tuple[FloatArray, npt.NDArray[np.bool_] | None]:
    """Second differences at the contiguous ``centres`` of the odd-reflected phase, and their validity."""
    c0, cnt = int(centres[0]), int(centres.size)
    xl, xc, xr = (_extended(p.x, c0 + o, cnt) for o in (-m, 0, m))
    v = (xr - xc) - (xc - xl)
    ok = None
    if p.bad is not None:
        # reflect the missing-point indicator too: a reflected value 2 b0 - bj
        # is 0 only when both the pivot and the mirrored point are present
        b = p.bad.astype(np.float64)
        bl, bc, br = (_extended(b, c0 + o, cnt) for o in (-m, 0, m))
        ok = (bl == 0) & (bc == 0) & (br == 0)
    return v, ok


def _totdev_core(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """Raw TOTDEV, SP 1065 eq. 25 (no bias correction).

    The phase is extended at both ends by odd reflection,
    x*[1-j] = 2 x[1] - x[1+j] and x*[N+j] = 2 x[N] - x[N-j] (j = 1..N-2), and
    the N-2 second differences centred on the original interior points are used
    at every m. Centres m..N-1-m see no reflected point: their terms are OADEV's,
    computed as such; only the 2(m-1) centres near the ends use reflected points,
    so no extended copy of the series is built.
    """
    x = p.x
    n = x.size
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    if n < 3:
        return devs, ns
    buf = np.empty(n) if p.has_gaps else None
    buf2 = np.empty(n) if p.has_gaps else None
    for k, m in enumerate(ms):
        m = int(m)
        if m > n - 2:
            continue
        # interior centres i = m .. n-1-m: OADEV terms starting at i - m
        s, cnt = 0.0, 0
        if n > 2 * m:
            if not p.has_gaps:
                s, cnt = _diff_sumsq(x, m, 2)
            else:
                d = _lagdiff(x, m, buf)
                v = _lagdiff(d, m, buf2)
                s, cnt = _sumsq(v, p.points_ok(np.arange(v.size, dtype=np.int64), (0, m, 2 * m)))
        # centres 1..n-2 outside that range touch the reflection
        left_end = min(m, n - 1)
        for lo, hi in ((1, left_end), (max(n - m, left_end), n - 1)):
            if hi > lo:
                v, ok = _reflected_points(p, np.arange(lo, hi, dtype=np.int64), m)
                se, ce = _sumsq(v, ok)
                s += se
                cnt += ce
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
