"""timemon.analysis against allantools on power-law noise of every type."""

from __future__ import annotations

import allantools as at
import numpy as np
import pytest
import timemon.analysis as ta
from timemon.analysis._prepare import to_phase
from timemon.analysis.confidence import noise_types
from timemon.analysis.stability import totvar_bias
from timemon.analysis.total import HTOT_BIAS, MTOT_BIAS

NOISES = {"wpm": 2, "fpm": 1, "wfm": 0, "ffm": -1, "rwfm": -2}


def power_law_phase(n: int, alpha: int, seed: int) -> np.ndarray:
    """Phase (s) whose fractional frequency has S_y(f) ~ f^alpha (FFT-shaped noise)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    y = np.fft.irfft(spec * f ** (alpha / 2.0), n)
    x = np.concatenate(([0.0], np.cumsum(y)))
    return x * 1e-9 + 3e-6  # a phase offset, as real data has


FAST = ["adev", "oadev", "mdev", "tdev", "hdev", "ohdev", "mtie", "tierms"]


def _compare(ours: tuple, theirs: tuple, rtol: float = 1e-9) -> None:
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=rtol, atol=0)
    np.testing.assert_array_equal(ours[3], theirs[3])


@pytest.mark.parametrize("noise", sorted(NOISES))
@pytest.mark.parametrize("stat", FAST)
def test_fast_stats_match_allantools(stat: str, noise: str) -> None:
    x = power_law_phase(10_000, NOISES[noise], seed=7)
    ours = ta.STATISTICS[stat](x, 10.0, "phase", "octave")
    assert ours[0].size >= 8
    theirs = getattr(at, stat)(x, rate=10.0, data_type="phase", taus=ours[0])
    _compare(ours, theirs)
    if stat != "tierms":  # allantools' tierms errors are all zero (its own TODO)
        np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-9)


@pytest.mark.parametrize("stat", ["adev", "oadev", "mdev", "hdev", "ohdev", "totdev"])
def test_frequency_input_matches_allantools(stat: str) -> None:
    y = np.diff(power_law_phase(4_000, 0, seed=3)) + 1e-7  # a frequency offset
    kw = {"bias_correction": False} if stat == "totdev" else {}
    ours = ta.STATISTICS[stat](y, 1.0, "freq", "decade", **kw)
    theirs = getattr(at, stat)(y, rate=1.0, data_type="freq", taus=ours[0])
    _compare(ours, theirs, rtol=1e-8)


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_totdev_raw_matches_and_bias_follows_sp1065(noise: str) -> None:
    x = power_law_phase(3_000, NOISES[noise], seed=11)
    raw = ta.totdev(x, 1.0, "phase", "octave", bias_correction=False)
    theirs = at.totdev(x, rate=1.0, data_type="phase", taus=raw[0])
    _compare(raw, theirs)
    # allantools omits the TOTVAR bias correction (its FIXME): SP 1065 5.2.11
    # divides by 1 - a tau / T for flicker and random-walk FM.
    corrected = ta.totdev(x, 1.0, "phase", "octave")
    p = to_phase(x, 1.0, "phase")
    ms = np.rint(raw[0]).astype(np.int64)
    alphas = noise_types(p, ms, "totdev")
    bias = np.array([totvar_bias(int(a), int(m), p.n) for a, m in zip(alphas, ms, strict=True)])
    np.testing.assert_allclose(corrected[1], raw[1] / np.sqrt(bias), rtol=1e-12)


@pytest.mark.parametrize("noise", sorted(NOISES))
@pytest.mark.parametrize("stat", ["mtotdev", "ttotdev", "htotdev"])
def test_total_family_raw_matches_allantools(stat: str, noise: str) -> None:
    # allantools is O(N^2) in pure Python here: keep N small.
    x = power_law_phase(300, NOISES[noise], seed=5)
    f = ta.STATISTICS[stat]
    raw = f(x, 1.0, "phase", "octave", bias_correction=False)
    theirs = getattr(at, stat)(x, rate=1.0, data_type="phase", taus=raw[0])
    _compare(raw, theirs)
    # allantools leaves out the bias corrections (issue #22 / its FIXMEs); the
    # published values divide the variance by B(alpha) (Riley's CI paper; HBGR 2000).
    corrected = f(x, 1.0, "phase", "octave")
    p = to_phase(x, 1.0, "phase")
    ms = np.rint(raw[0]).astype(np.int64)
    alphas = noise_types(p, ms, stat)
    if stat == "htotdev":
        b = np.array([HTOT_BIAS[int(a)] if m > 1 else 1.0 for a, m in zip(alphas, ms, strict=True)])
    else:
        b = np.array([MTOT_BIAS[int(a)] for a in alphas])
    np.testing.assert_allclose(corrected[1], raw[1] / np.sqrt(b), rtol=1e-12)


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_theo1_matches_allantools(noise: str) -> None:
    x = power_law_phase(200, NOISES[noise], seed=9)
    ours = ta.theo1(x, 1.0, "phase", "octave")
    m = np.rint(ours[0] / 0.75)
    theirs = at.theo1(x, rate=1.0, data_type="phase", taus=m)
    # allantools reports tau = m tau0; Theo1's tau is 0.75 m tau0 (SP 1065 eq. 30)
    np.testing.assert_allclose(ours[0], 0.75 * theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-9)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-9)
    np.testing.assert_array_equal(ours[3], theirs[3])


def test_large_phase_offset_keeps_precision() -> None:
    # Random-walk FM phase riding on a 1e-3 s offset and a 1e-6 frequency offset:
    # MDEV from running sums of differences keeps ~all digits.
    x = power_law_phase(100_000, -2, seed=1)
    t = np.arange(x.size)
    ref = ta.mdev(x, taus=[1, 16, 256])[1]
    shifted = ta.mdev(x + 1e-3 + 1e-6 * t, taus=[1, 16, 256])[1]
    np.testing.assert_allclose(shifted, ref, rtol=1e-9)
