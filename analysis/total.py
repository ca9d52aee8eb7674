"""Total and Thêo estimators: MTOTDEV, TTOTDEV, HTOTDEV (bias-corrected) and Theo1.

The definitions (SP 1065 eqs. 27, 28, 29) sum 6m terms over each of N - 3m + 1
subsequences; allantools does it element by element in Python, O(N^2) over the
octave taus. Only the total over the subsequences is needed, and
:mod:`._reflected` computes it in O(N) plus one FFT correlation per tau (see
its docstring for the derivation).

Theo1 (eq. 30) sums m/2 terms over N - m starts: O(N m) per tau, vectorised
over blocks of lags; at N = 10^4 it takes a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from ._prepare import FloatArray, IntArray, Phase, TausSpec, averaging_factors, finish, to_phase
from ._reflected import reflected_total
from .stability import Result, _check_total_gaps, _hadamard_core

# Bias of Mod Totvar and Htotvar relative to Mod AVAR / HVAR by noise type:
# E[Mod Totvar] = B * Mod AVAR (W. J. Riley, "Confidence intervals and bias
# corrections for the Stable32 variance functions", Table p. 6; SP 1065
# section 5.2.12) and E[Htotvar] = (1 + a) HVAR (Howe et al., "A total
# estimator of the Hadamard function used for GPS operations", PTTI 2000).
MTOT_BIAS = {2: 0.94, 1: 0.83, 0: 0.73, -1: 0.70, -2: 0.69}
HTOT_BIAS = {2: 1.0, 1: 1.0, 0: 0.995, -1: 0.851, -2: 0.771, -3: 0.717, -4: 0.679}

_BLOCK_ELEMS = 1 << 20  # elements per work block (8 MiB per float array)


def _mtot_raw(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """Raw MTOTDEV (SP 1065 eq. 27), per m: (dev, number of subsequences)."""
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    for k, m in enumerate(ms):
        m = int(m)
        nwin = p.n - 3 * m + 1
        if nwin < 1:
            continue
        ok = p.span_ok(np.arange(nwin, dtype=np.int64), 3 * m)
        total, count = reflected_total(p.x, m, ok)
        ns[k] = count
        if count:
            devs[k] = np.sqrt(total / (6.0 * m * count) / 2.0) / (m * p.tau0)
    return devs, ns


def _htot_raw(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """Raw HTOTDEV (SP 1065 eq. 29); OHDEV at m = 1 as Stable32 does."""
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    y = np.diff(p.x)
    y /= p.tau0
    for k, m in enumerate(ms):
        m = int(m)
        if m == 1:
            d, n = _hadamard_core(p, np.array([1], dtype=np.int64), True)
            devs[k], ns[k] = d[0], n[0]
            continue
        nwin = y.size - 3 * m + 1
        if nwin < 1:
            continue
        ok = p.span_ok(np.arange(nwin, dtype=np.int64), 3 * m + 1)
        total, count = reflected_total(y, m, ok)
        ns[k] = count
        if count:
            devs[k] = np.sqrt(total / (6.0 * m * count) / 6.0)
    return devs, ns


def _theo1_raw(p: Phase, ms: IntArray) -> tuple[FloatArray, FloatArray]:
    """Theo1 (SP 1065 eq. 30), m even:

    Theo1 = 1 / (0.75 (N-m) (m tau0)^2) sum_{i} sum_{d=0}^{m/2-1}
            [(x_i - x_{i-d+m/2}) + (x_{i+m} - x_{i+d+m/2})]^2 / (m/2 - d).
    """
    x = p.x
    n = x.size
    devs = np.zeros(ms.size)
    ns = np.zeros(ms.size)
    bad = p.bad
    for k, m in enumerate(ms):
        m = int(m)
        half = m // 2
        nstart = n - m
        if nstart < 1:
            continue
        ends = x[:nstart] + x[m : m + nstart]  # x_i + x_{i+m}
        win = sliding_window_view(x, nstart)  # win[r] = x[r : r + nstart]
        good_ends = None
        bwin = None
        if p.has_gaps:
            starts = np.arange(nstart, dtype=np.int64)
            good_ends = p.points_ok(starts, (0, m))
            if bad is not None:
                bwin = sliding_window_view(bad, nstart)
        total = 0.0
        count = 0
        dblock = max(1, min(_BLOCK_ELEMS, max(n, 4096)) // max(nstart, 1))
        for d0 in range(0, half, dblock):
            d1 = min(half, d0 + dblock)
            ds = np.arange(d0, d1)
            lo_rows = win[half - ds]  # x_{i + m/2 - d}
            hi_rows = win[half + ds]  # x_{i + m/2 + d}
            t = ends[None, :] - lo_rows - hi_rows
            wts = 1.0 / (half - ds)
            if good_ends is None:
                total += float(np.dot(np.einsum("ij,ij->i", t, t), wts))
                count += t.size
            else:
                ok = np.broadcast_to(good_ends, t.shape).copy()
                if bwin is not None:
                    ok &= ~bwin[half - ds] & ~bwin[half + ds]
                t = np.where(ok, t, 0.0)
                total += float(np.dot(np.einsum("ij,ij->i", t, t), wts))
                count += int(ok.sum())
        ns[k] = count
        if count:
            # With gaps, scale by the fraction of terms kept (count / (nstart * half)).
            frac = count / (nstart * half)
            devs[k] = np.sqrt(total / (0.75 * nstart * frac * (m * p.tau0) ** 2))
    return devs, ns


def _bias_alphas(p: Phase, ms: IntArray, stat: str, alpha: int | None) -> IntArray:
    if alpha is not None:
        return np.full(ms.size, int(alpha), dtype=np.int64)
    from .confidence import noise_types

    return noise_types(p, ms, stat)


def mtotdev(
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
    *,
    bias_correction: bool = True,
    alpha: int | None = None,
) -> Result:
    """Modified total deviation, SP 1065 eq. 27, bias-corrected by noise type.

    allantools omits the correction (its FIXME); Stable32 and the published
    NBS14 table divide Mod Totvar by B(alpha) (``MTOT_BIAS``).
    """
    p = to_phase(data, rate, data_type)
    _check_total_gaps(p, "mtotdev")
    ms = averaging_factors(p.n, rate, taus, "mtotdev", max_m=(p.n - 1) // 3)
    devs, ns = _mtot_raw(p, ms)
    if bias_correction and ms.size:
        al = _bias_alphas(p, ms, "mtotdev", alpha)
        devs = devs / np.sqrt([MTOT_BIAS[int(np.clip(a, -2, 2))] for a in al])
    return finish(ms * p.tau0, devs, ns)


def ttotdev(
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
    *,
    bias_correction: bool = True,
    alpha: int | None = None,
) -> Result:
    """Time total deviation: tau / sqrt(3) * MTOTDEV (SP 1065 eq. 28, with tau^2)."""
    p = to_phase(data, rate, data_type)
    _check_total_gaps(p, "ttotdev")
    ms = averaging_factors(p.n, rate, taus, "ttotdev", max_m=(p.n - 1) // 3)
    devs, ns = _mtot_raw(p, ms)
    if bias_correction and ms.size:
        al = _bias_alphas(p, ms, "ttotdev", alpha)
        devs = devs / np.sqrt([MTOT_BIAS[int(np.clip(a, -2, 2))] for a in al])
    tau = ms * p.tau0
    return finish(tau, devs * tau / np.sqrt(3.0), ns)


def htotdev(
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
    *,
    bias_correction: bool = True,
    alpha: int | None = None,
) -> Result:
    """Hadamard total deviation, SP 1065 eq. 29, bias-corrected (Howe et al. 2000).

    At m = 1 the overlapping Hadamard deviation is returned, as Stable32 does;
    there no correction applies.
    """
    p = to_phase(data, rate, data_type)
    _check_total_gaps(p, "htotdev")
    ms = averaging_factors(p.n, rate, taus, "htotdev", max_m=(p.n - 2) // 3)
    devs, ns = _htot_raw(p, ms)
    if bias_correction and ms.size:
        al = _bias_alphas(p, ms, "htotdev", alpha)
        corr = np.array([HTOT_BIAS[int(np.clip(a, -4, 2))] for a in al])
        corr[ms == 1] = 1.0
        devs = devs / np.sqrt(corr)
    return finish(ms * p.tau0, devs, ns)


def theo1(
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
) -> Result:
    """Thêo1 deviation, SP 1065 eq. 30 (m even).

    The averaging factor m is chosen from ``taus`` as for the other statistics
    (m = tau * rate, even), but the returned tau is Theo1's effective averaging
    time 0.75 m tau0 (SP 1065 section 5.2.14), where allantools returns m tau0.
    ``ns`` counts the (start, d) terms, as allantools does.
    """
    p = to_phase(data, rate, data_type)
    ms = averaging_factors(p.n, rate, taus, "theo1", even=True, max_m=p.n - 1)
    devs, ns = _theo1_raw(p, ms)
    taus_out, devs, _errs, ns = finish(0.75 * ms * p.tau0, devs, ns)
    # allantools' errs for Theo1: dev / sqrt(number of starts N - m)
    m_kept = np.rint(taus_out / (0.75 * p.tau0))
    errs = devs / np.sqrt(np.maximum(p.n - m_kept, 1))
    return taus_out, devs, errs, ns
