"""Chi-squared quantiles, Greenhall EDF, noise identification and the table."""

from __future__ import annotations

import numpy as np
import pytest
import timemon.analysis as ta
from timemon.analysis._prepare import to_phase
from timemon.analysis.chisq import chi2_ppf
from timemon.analysis.confidence import edf_greenhall, identify_noise


@pytest.mark.parametrize("df", [0.5, 1.0, 1.7, 3.0, 10.0, 123.4, 1e5])
@pytest.mark.parametrize("p", [1e-4, 0.1585, 0.5, 0.8415, 0.9999])
def test_chi2_ppf_matches_scipy(df: float, p: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert chi2_ppf(p, df) == pytest.approx(stats.chi2.ppf(p, df), rel=1e-10)


CASES = [  # (alpha, d, m, N, overlapping, modified)
    (a, d, m, n, ov, mod)
    for a in (2, 1, 0, -1, -2)
    for d in (2, 3)
    for m in (1, 4, 64)
    for n in (129, 1025, 100_000)
    for ov, mod in ((False, False), (True, False), (True, True))
    if n > 4 * m * (d + 1)
    and not (a == 2 and not mod and np.ceil((1 + np.floor((m if ov else 1) * (n - m * d - m) / m))
                                           / (m if ov else 1)) <= d)
]


@pytest.mark.parametrize("case", CASES)
def test_greenhall_edf_matches_allantools(case: tuple) -> None:
    ci = pytest.importorskip("allantools.ci")
    a, d, m, n, ov, mod = case
    want = ci.edf_greenhall(alpha=a, d=d, m=m, N=n, overlapping=ov, modified=mod)
    assert edf_greenhall(a, d, m, n, ov, mod) == pytest.approx(want, rel=1e-9)


def _noise(alpha: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    y = np.fft.irfft(spec * f ** (alpha / 2.0), n)
    return np.concatenate(([0.0], np.cumsum(y)))


@pytest.mark.parametrize("alpha", [2, 1, 0, -1, -2])
def test_noise_id_recognises_each_power_law(alpha: int) -> None:
    p = to_phase(_noise(alpha, 8192, seed=alpha + 10), 1.0, "phase")
    assert identify_noise(p, 1, "oadev") == alpha
    assert identify_noise(p, 4, "oadev") == alpha


def test_table_interval_brackets_dev_and_shrinks_with_edf() -> None:
    x = _noise(0, 4096, seed=1)
    t = ta.stability_table("oadev", x, 1.0, "phase", "octave")
    assert np.all(t.ci_low < t.dev) and np.all(t.dev < t.ci_high)
    assert np.all(t.alpha == 0)
    width = (t.ci_high - t.ci_low) / t.dev
    assert np.all(np.diff(t.edf) < 0) and np.all(np.diff(width) > 0)
    # the 68.3 % interval: chi2 quantiles of the EDF
    i = 3
    lo = t.dev[i] * np.sqrt(t.edf[i] / chi2_ppf(1 - 0.1585, t.edf[i]))
    assert t.ci_low[i] == pytest.approx(lo, rel=1e-12)


@pytest.mark.parametrize("stat", sorted(ta.STATISTICS))
def test_table_has_every_field_for_every_stat(stat: str) -> None:
    x = _noise(-1, 600, seed=2)
    t = ta.stability_table(stat, x, 2.0, "phase", "octave")
    ref = ta.STATISTICS[stat](x, 2.0, "phase", "octave")
    np.testing.assert_allclose(t.tau, ref[0])
    np.testing.assert_allclose(t.dev, ref[1])
    assert t.m.size == t.tau.size == t.alpha.size == t.edf.size
    if stat not in ("mtie", "tierms"):
        assert np.all(np.isfinite(t.ci_low)) and np.all(t.ci_low <= t.dev)
        assert np.all(t.ci_high >= t.dev) and np.all(t.edf > 0)
    pts = t.points()
    assert set(pts[0]) == {"tau", "m", "n", "dev", "ci_low", "ci_high", "alpha", "edf"}
