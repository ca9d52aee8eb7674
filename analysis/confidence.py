"""Noise identification, equivalent degrees of freedom and confidence intervals.

* Noise type alpha (S_y(f) ~ f^alpha, +2 white PM ... -2 random-walk FM, down
  to -4 for the Hadamard family) per averaging factor:
  - lag-1 autocorrelation (W. J. Riley and C. A. Greenhall, "Power law noise
    identification using the lag 1 autocorrelation", EFTF 2004) when at least
    30 decimated points remain;
  - otherwise the B1 bias ratio (Barnes; Howe, Beard, Greenhall & Riley, PTTI
    2000, Table 4) with R(n) = Mod AVAR / AVAR separating white from flicker PM;
  - with fewer than 16 averages B1 is too noisy to trust: the previous tau's
    type is carried forward (white FM when there is none).
* EDF by C. A. Greenhall and W. J. Riley, "Uncertainty of stability variances
  based on finite differences", PTTI 2003 (ADEV, OADEV, MDEV, TDEV, HDEV, OHDEV);
  SP 1065 Tables 7 and 8 for TOTDEV and MTOTDEV/TTOTDEV; the simple formulas
  of SP 1065 Table 5 where Greenhall's algorithm does not apply.
* Chi-squared interval: var * edf / chi2_{1-p}(edf) ... var * edf / chi2_p(edf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._prepare import FloatArray, IntArray, Phase, TausSpec, to_phase
from .chisq import chi2_ppf

ONE_SIGMA = 0.683  # Stable32's 68.3 % interval

HADAMARD_STATS = frozenset({"hdev", "ohdev", "htotdev"})
MIN_ACF_POINTS = 30
MIN_NOISE_POINTS = 16


# --------------------------------------------------------------------------
# noise identification
# --------------------------------------------------------------------------


_BLOCK = 1 << 15


def lag1_acf(z: FloatArray) -> float:
    """r1 = sum (z_i - mean)(z_{i+1} - mean) / sum (z_i - mean)^2 (Riley & Greenhall eq. 2).

    Block by block, so the centred copy never exceeds a cache-sized block.
    """
    mu = z.mean()
    den = 0.0
    num = 0.0
    prev = None
    buf = np.empty(min(z.size, _BLOCK))
    for a in range(0, z.size, _BLOCK):
        d = np.subtract(z[a : a + _BLOCK], mu, out=buf[: min(_BLOCK, z.size - a)])
        den += float(np.dot(d, d))
        num += float(np.dot(d[:-1], d[1:]))
        if prev is not None:
            num += prev * float(d[0])
        prev = float(d[-1])
    if den == 0.0:
        return 0.0
    return num / den


def acf_noise_id(z: FloatArray, dmax: int, is_phase: bool = True) -> int:
    """Lag-1 ACF noise id: difference until delta = r1/(1+r1) < 0.25 or d = dmax.

    Then p = -2 (delta + d) estimates the spectral exponent of z; for phase
    data alpha = p + 2 (Riley & Greenhall 2004, section 3).
    """
    d = 0
    while True:
        if z.size < 3:
            delta = 0.0
        else:
            r1 = lag1_acf(z)
            delta = r1 / (1.0 + r1)
        if delta < 0.25 or d >= dmax:
            alpha = -round(2.0 * delta) - 2 * d + (2 if is_phase else 0)
            return int(alpha)
        z = np.diff(z)
        d += 1


def b1_theory(n: int, mu: int) -> float:
    """Expected B1 = var / AVAR for n averages and tau^mu Allan variance (HBGR 2000, Table 4)."""
    if mu == -2:
        return (n * n - 1.0) / (1.5 * n * (n - 1.0))
    if mu == 0:
        return n * math.log(n) / (2.0 * (n - 1.0) * math.log(2.0))
    return n * (1.0 - n**mu) / (2.0 * (n - 1.0) * (1.0 - 2.0**mu))


def _rn_fpm(m: int) -> float:
    """R(n) = MVAR/AVAR for flicker PM, f_h = 1/(2 tau0) (SP 1065 Table 2 ratios)."""
    avar = (1.038 + 3.0 * math.log(2.0 * math.pi * 0.5 * m)) / (4.0 * math.pi**2)
    mvar = 3.0 * math.log(256.0 / 27.0) / (8.0 * math.pi**2)
    return mvar / avar


def b1_noise_id(p: Phase, m: int, max_mu: int) -> int | None:
    """B1 / R(n) noise id from non-overlapping m-averages of frequency."""
    x = p.x[:: m]
    yb = np.diff(x)
    if p.has_gaps:
        idx = np.arange(yb.size, dtype=np.int64) * m
        ok = p.points_ok(idx, (0, m))
        yb = yb[ok] if ok is not None else yb
    n = yb.size
    if n < MIN_NOISE_POINTS:
        return None
    avar = 0.5 * float(np.mean(np.diff(yb) ** 2))
    if avar == 0.0:
        return None
    b1 = float(np.var(yb, ddof=1)) / avar
    mus = list(range(-2, max_mu + 1))
    theory = [b1_theory(n, mu) for mu in mus]
    mu = mus[-1]
    for k in range(len(mus) - 1):
        if b1 < math.sqrt(theory[k] * theory[k + 1]):  # geometric-mean boundary
            mu = mus[k]
            break
    if mu >= -1:
        return -1 - mu  # mu = -1 WFM (0), 0 FFM (-1), 1 RWFM (-2), 2 FWFM (-3), 3 RRFM (-4)
    # mu = -2: white or flicker PM; R(n) = MVAR/AVAR is 1/m for white PM.
    from .stability import _allan_core, _mdev_core

    ms = np.array([m], dtype=np.int64)
    a, _ = _allan_core(p, ms, True)
    md, _ = _mdev_core(p, ms)
    if a[0] == 0.0 or md[0] == 0.0:
        return 2
    rn = (md[0] / a[0]) ** 2
    return 2 if rn < math.sqrt((1.0 / m) * _rn_fpm(m)) else 1


def identify_noise(p: Phase, m: int, stat: str, previous: int | None = None) -> int:
    """Noise type alpha at averaging factor m for a statistic."""
    hadamard = stat in HADAMARD_STATS
    dmax = 3 if hadamard else 2
    lo = -4 if hadamard else -2
    z = p.x[::m]
    if p.bad is not None:
        z = z[~p.bad[::m]]
    if z.size >= MIN_ACF_POINTS:
        alpha = acf_noise_id(z, dmax)
    else:
        got = b1_noise_id(p, m, 3 if hadamard else 1)
        if got is None:
            return previous if previous is not None else 0
        alpha = got
    return int(np.clip(alpha, lo, 2))


def noise_types(p: Phase, ms: IntArray, stat: str) -> IntArray:
    out = np.zeros(ms.size, dtype=np.int64)
    prev: int | None = None
    for k, m in enumerate(ms):
        prev = identify_noise(p, int(m), stat, prev)
        out[k] = prev
    return out


# --------------------------------------------------------------------------
# Greenhall's EDF algorithm (Greenhall & Riley, PTTI 2003)
# --------------------------------------------------------------------------


def _sw(t: FloatArray, alpha: int) -> FloatArray:
    """Eq. 7: generalized autocovariance kernels of the phase for noise alpha."""
    at = np.abs(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.where(at > 0, np.log(at), 0.0)
    table = {
        2: -at,
        1: t**2 * lg,
        0: at**3,
        -1: t**4 * lg,
        -2: at**5,
        -3: t**6 * lg,
        -4: at**7,
    }
    return table[alpha]


def _sx(t: FloatArray, f: float, alpha: int) -> FloatArray:
    """Eq. 8: kernel after the F-point phase average (F = inf: frequency limit)."""
    if math.isinf(f):
        return _sw(t, alpha + 2)
    return f * f * (2.0 * _sw(t, alpha) - _sw(t - 1.0 / f, alpha) - _sw(t + 1.0 / f, alpha))


def _sz(t: FloatArray, f: float, alpha: int, d: int) -> FloatArray:
    """Eq. 9: kernel of the d-th difference, sum_k (-1)^k C(2d, d+k) sx(t+k)."""
    out = np.zeros_like(t)
    for k in range(-d, d + 1):
        out += (-1) ** k * math.comb(2 * d, d + k) * _sx(t + k, f, alpha)
    return out


def _basic_sum(j: int, mm: float, s: float, f: float, alpha: int, d: int) -> float:
    """Eq. 10: sz(0)^2 + 2 sum_{k=1}^{J-1} (1 - k/M) sz(k/S)^2 + (1 - J/M) sz(J/S)^2."""
    z0 = _sz(np.array([0.0]), f, alpha, d)[0]
    total = z0 * z0
    if j >= 1:
        ks = np.arange(1, j, dtype=np.float64)
        zk = _sz(ks / s, f, alpha, d)
        total += float(np.sum(2.0 * (1.0 - ks / mm) * zk * zk))
        zj = _sz(np.array([j / s]), f, alpha, d)[0]
        total += (1.0 - j / mm) * zj * zj
    return total


_T1 = {  # modified variances: (a0, a1) per alpha, d = 1, 2, 3
    2: ((2 / 3, 1 / 3), (7 / 9, 1 / 2), (22 / 25, 2 / 3)),
    1: ((0.840, 0.345), (0.997, 0.616), (1.141, 0.843)),
    0: ((1.079, 0.368), (1.033, 0.607), (1.184, 0.848)),
    -1: (None, (1.048, 0.534), (1.180, 0.816)),
    -2: (None, (1.302, 0.535), (1.175, 0.777)),
    -3: (None, None, (1.194, 0.703)),
    -4: (None, None, (1.489, 0.702)),
}
_T2 = {  # unmodified variances
    2: ((3 / 2, 1 / 2), (35 / 18, 1.0), (231 / 100, 3 / 2)),
    1: ((78.6, 25.2), (790.0, 410.0), (9950.0, 6520.0)),
    0: ((2 / 3, 1 / 6), (2 / 3, 1 / 3), (7 / 9, 1 / 2)),
    -1: (None, (0.852, 0.375), (0.997, 0.617)),
    -2: (None, (1.079, 0.368), (1.033, 0.607)),
    -3: (None, None, (1.053, 0.553)),
    -4: (None, None, (1.302, 0.535)),
}
_T3 = {1: (6.0, 4.0), 2: (15.23, 12.0), 3: (47.8, 40.0)}  # flicker PM log terms
_JMAX = 100


def edf_greenhall(alpha: int, d: int, m: int, n: int, overlapping: bool, modified: bool) -> float:
    """Greenhall & Riley (2003) combined EDF algorithm, section 4.

    d: 2 Allan, 3 Hadamard; n: number of phase points; F = 1 for modified,
    m otherwise; S = m for overlapped estimators, 1 otherwise.
    """
    if alpha + 2 * d <= 1:
        raise ValueError("EDF undefined for this noise and difference order")
    f = 1.0 if modified else float(m)
    s = float(m) if overlapping else 1.0
    length = m / f + m * d  # filter length in phase samples
    mm = 1.0 + math.floor(s * (n - length) / m)  # number of summands M
    if mm < 1:
        raise ValueError("too few points for this averaging factor")
    j = int(min(mm, (d + 1) * s))
    r = mm / s
    if modified:  # case 1
        if j <= _JMAX:
            return mm * _sz(np.array([0.0]), 1.0, alpha, d)[0] ** 2 / _basic_sum(j, mm, s, 1.0, alpha, d)
        if r > d + 1:
            a0, a1 = _T1[alpha][d - 1]  # type: ignore[misc]
            return r / (a0 - a1 / r)
        mp = _JMAX / r
        return _JMAX * _sz(np.array([0.0]), 1.0, alpha, d)[0] ** 2 / _basic_sum(
            _JMAX, _JMAX, mp, 1.0, alpha, d)
    if alpha <= 0:  # case 2
        if j <= _JMAX:
            fp = float(m) if m * (d + 1) <= _JMAX else math.inf
            return mm * _sz(np.array([0.0]), fp, alpha, d)[0] ** 2 / _basic_sum(j, mm, s, fp, alpha, d)
        if r > d + 1:
            a0, a1 = _T2[alpha][d - 1]  # type: ignore[misc]
            return r / (a0 - a1 / r)
        mp = _JMAX / r
        return _JMAX * _sz(np.array([0.0]), math.inf, alpha, d)[0] ** 2 / _basic_sum(
            _JMAX, _JMAX, mp, math.inf, alpha, d)
    if alpha == 1:  # case 3
        b0, b1 = _T3[d]
        if j <= _JMAX:
            return mm * _sz(np.array([0.0]), float(m), 1, d)[0] ** 2 / _basic_sum(j, mm, s, float(m), 1, d)
        if r > d + 1:
            a0, a1 = _T2[1][d - 1]  # type: ignore[misc]
            return (b0 + b1 * math.log(m)) ** 2 * r / (a0 - a1 / r)
        mp = _JMAX / r
        return (b0 + b1 * math.log(m)) ** 2 * _JMAX / _basic_sum(_JMAX, _JMAX, mp, mp, 1, d)
    # case 4: white PM, unmodified
    if math.ceil(r) <= d:
        raise ValueError("Greenhall case 4 needs ceil(M/S) > d")
    a0 = math.comb(4 * d, 2 * d) / math.comb(2 * d, d) ** 2
    a1 = d / 2.0
    return mm / (a0 - a1 / r)


def edf_simple(alpha: int, m: int, n: int) -> float:
    """SP 1065 Table 5: simple EDF approximations for the overlapping ADEV."""
    nn, mf = float(n), float(m)
    if alpha >= 2:
        return (nn + 1) * (nn - 2 * mf) / (2 * (nn - mf))
    if alpha == 1:
        return math.exp(math.sqrt(math.log((nn - 1) / (2 * mf)) * math.log((2 * mf + 1) * (nn - 1) / 4)))
    if alpha == 0:
        return (3 * (nn - 1) / (2 * mf) - 2 * (nn - 2) / nn) * 4 * mf * mf / (4 * mf * mf + 5)
    if alpha == -1:
        if m == 1:
            return 2 * (nn - 2) / (2.3 * nn - 4.9)
        return 5 * nn * nn / (4 * mf * (nn + 3 * mf))
    return (nn - 2) / mf * ((nn - 1) ** 2 - 3 * mf * (nn - 1) + 4 * mf * mf) / (nn - 3) ** 2


# SP 1065 Table 7 (TOTDEV) and Table 8 (MTOTDEV/TTOTDEV): edf = b (T/tau) - c.
_TOT_BC = {0: (1.50, 0.0), -1: (1.17, 0.22), -2: (0.93, 0.36)}
_MTOT_BC = {2: (1.90, 2.1), 1: (1.20, 1.40), 0: (1.10, 1.2), -1: (0.85, 0.50), -2: (0.75, 0.31)}

_GREENHALL_ARGS = {  # stat: (d, overlapping, modified)
    "adev": (2, False, False),
    "oadev": (2, True, False),
    "mdev": (2, True, True),
    "tdev": (2, True, True),
    "hdev": (3, False, False),
    "ohdev": (3, True, False),
}


def edf(stat: str, alpha: int, m: int, n: int) -> float:
    """EDF of one point; NaN for MTIE and TIE-RMS (no chi-squared model)."""
    try:
        if stat in _GREENHALL_ARGS:
            d, ov, mod = _GREENHALL_ARGS[stat]
            return edf_greenhall(alpha, d, m, n, ov, mod)
        if stat == "totdev":
            if alpha in _TOT_BC:
                b, c = _TOT_BC[alpha]
                return b * (n - 1) / m - c
            return edf_greenhall(alpha, 2, m, n, True, False)
        if stat in ("mtotdev", "ttotdev"):
            b, c = _MTOT_BC[int(np.clip(alpha, -2, 2))]
            return b * (n - 1) / m - c
        if stat == "htotdev":
            # Stable32's Htot EDF table is not reproduced here; OHDEV's Greenhall
            # EDF is used (Htot has at least the OHDEV's confidence).
            return edf_greenhall(alpha, 3, m, n, True, False)
        if stat == "theo1":
            # Theo1 at tau = 0.75 m tau0 averages over ~m/2 OADEV-like terms per
            # start; OADEV's EDF at the same m is used as a conservative stand-in.
            return edf_greenhall(int(np.clip(alpha, -2, 2)), 2, m, n, True, False)
    except (ValueError, KeyError, ZeroDivisionError):
        return max(edf_simple(alpha, m, n), 1.0) if n > 2 * m else 1.0
    return math.nan


def chi2_interval(dev: float, edf_value: float, ci: float = ONE_SIGMA) -> tuple[float, float]:
    """(low, high) deviation bounds of the two-sided chi-squared interval."""
    if not (math.isfinite(edf_value) and edf_value > 0 and dev > 0):
        return math.nan, math.nan
    p = 0.5 * (1.0 - ci)
    var = dev * dev
    lo = var * edf_value / chi2_ppf(1.0 - p, edf_value)
    hi = var * edf_value / chi2_ppf(p, edf_value)
    return math.sqrt(lo), math.sqrt(hi)


# --------------------------------------------------------------------------
# the full table
# --------------------------------------------------------------------------


@dataclass
class StabilityTable:
    """One statistic's results with confidence: arrays indexed by point."""

    stat: str
    data_type: str
    rate: float
    tau: FloatArray
    m: IntArray
    n: FloatArray
    dev: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    alpha: IntArray
    edf: FloatArray

    def points(self) -> list[dict[str, float | int]]:
        return [
            {
                "tau": float(self.tau[i]),
                "m": int(self.m[i]),
                "n": int(self.n[i]),
                "dev": float(self.dev[i]),
                "ci_low": float(self.ci_low[i]),
                "ci_high": float(self.ci_high[i]),
                "alpha": int(self.alpha[i]),
                "edf": float(self.edf[i]),
            }
            for i in range(self.tau.size)
        ]


def stability_table(
    stat: str,
    data: npt.ArrayLike,
    rate: float = 1.0,
    data_type: str = "phase",
    taus: TausSpec = "octave",
    ci: float = ONE_SIGMA,
) -> StabilityTable:
    """Compute ``stat`` with, per point: tau, m, n, dev, ci_low, ci_high, alpha, edf."""
    from . import STATISTICS

    if stat not in STATISTICS:
        raise ValueError(f"unknown statistic {stat!r}; choose from {', '.join(STATISTICS)}")
    arr = np.asarray(data, dtype=np.float64)
    taus_out, devs, _errs, ns = STATISTICS[stat](arr, rate, data_type, taus)
    rate_f = float(rate)
    tau0 = 1.0 / rate_f
    if stat == "theo1":
        m = np.rint(taus_out / (0.75 * tau0)).astype(np.int64)
    else:
        m = np.rint(taus_out / tau0).astype(np.int64)
    p = to_phase(arr, rate_f, data_type)
    alphas = noise_types(p, m, stat) if m.size else np.zeros(0, dtype=np.int64)
    edfs = np.array([edf(stat, int(a), int(mm), p.n) for a, mm in zip(alphas, m, strict=True)])
    lo = np.full(m.size, np.nan)
    hi = np.full(m.size, np.nan)
    for i in range(m.size):
        lo[i], hi[i] = chi2_interval(float(devs[i]), float(edfs[i]), ci)
    return StabilityTable(
        stat=stat,
        data_type=data_type,
        rate=rate_f,
        tau=taus_out,
        m=m,
        n=ns,
        dev=devs,
        ci_low=lo,
        ci_high=hi,
        alpha=alphas,
        edf=edfs,
    )
