"""Chi-squared quantiles without scipy.

The regularized lower incomplete gamma function P(a, x) is evaluated by its
power series for x < a + 1 and by the Legendre continued fraction (modified
Lentz) otherwise (Abramowitz & Stegun 6.5.29 and 6.5.31); the quantile is the
root of P(df/2, q/2) = p, found by safeguarded Newton iteration. Accurate to
~1e-12 relative for any real df > 0, including the small EDFs of long taus
where the Wilson-Hilferty approximation is off by several percent.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300


def gammainc_lower(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x)."""
    if a <= 0:
        raise ValueError("a must be > 0")
    if x <= 0:
        return 0.0
    log_pref = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # Series: P = x^a e^-x / Gamma(a+1) * sum_n x^n / ((a+1)...(a+n))
        term = 1.0 / a
        total = term
        n = 0
        while abs(term) > abs(total) * _EPS and n < 10_000:
            n += 1
            term *= x / (a + n)
            total += term
        return min(1.0, total * math.exp(log_pref))
    # Continued fraction for Q = 1 - P (modified Lentz).
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return max(0.0, 1.0 - math.exp(log_pref) * h)


def chi2_cdf(q: float, df: float) -> float:
    return gammainc_lower(0.5 * df, 0.5 * q)


def chi2_ppf(p: float, df: float) -> float:
    """Quantile q with P(chi^2_df <= q) = p."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if df <= 0 or not math.isfinite(df):
        raise ValueError("df must be a positive finite number")
    a = 0.5 * df
    # Start from Wilson-Hilferty, then refine; keep a bracket [lo, hi].
    z = _norm_ppf(p)
    h = 2.0 / (9.0 * df)
    q = df * max(1.0 - h + z * math.sqrt(h), 1e-3) ** 3
    lo, hi = 0.0, math.inf
    log_norm = math.lgamma(a) + a * math.log(2.0)
    for _ in range(200):
        f = chi2_cdf(q, df) - p
        if f > 0:
            hi = min(hi, q)
        else:
            lo = max(lo, q)
        # chi-squared density at q
        pdf = math.exp((a - 1.0) * math.log(q) - 0.5 * q - log_norm) if q > 0 else 0.0
        step = f / pdf if pdf > 0 else math.inf
        new = q - step
        if not (lo < new < hi) or not math.isfinite(new):
            new = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * q + 1.0
        if abs(new - q) <= 1e-14 * max(q, 1e-300):
            return new
        q = new
    return q


def _norm_ppf(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, ~1e-9); a start value only."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_norm_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
