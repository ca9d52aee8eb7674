"""Invariance properties (hypothesis) and gap handling."""

from __future__ import annotations

import numpy as np
import timemon.analysis as ta
from hypothesis import given, settings
from hypothesis import strategies as st

ALL = sorted(ta.STATISTICS)
RAMP_FREE = ["adev", "oadev", "mdev", "tdev", "hdev", "ohdev", "totdev", "mtotdev", "htotdev",
             "theo1"]


def _phase(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(n)) * 1e-9 + rng.standard_normal(n) * 1e-9


seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(40, 200)


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=sizes, k=st.floats(1e-3, 1e3))
def test_scaling_phase_scales_every_deviation(seed: int, n: int, k: float) -> None:
    x = _phase(seed, n)
    for stat in ALL:
        # fixed noise type, so a bias correction cannot switch between the two runs
        kw = {"alpha": 0} if stat in ("totdev", "mtotdev", "ttotdev", "htotdev") else {}
        a = ta.STATISTICS[stat](x, 1.0, "phase", "octave", **kw)
        b = ta.STATISTICS[stat](k * x, 1.0, "phase", "octave", **kw)
        np.testing.assert_allclose(b[1], k * a[1], rtol=1e-9, err_msg=stat)


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=sizes, c=st.floats(-1.0, 1.0))
def test_constant_phase_changes_nothing(seed: int, n: int, c: float) -> None:
    x = _phase(seed, n)
    for stat in ALL:
        a = ta.STATISTICS[stat](x, 1.0, "phase", "octave")
        b = ta.STATISTICS[stat](x + c, 1.0, "phase", "octave")
        np.testing.assert_allclose(b[1], a[1], rtol=1e-6, atol=0, err_msg=stat)


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=sizes, f=st.floats(-1e-6, 1e-6))
def test_linear_ramp_leaves_allan_and_hadamard_unchanged(seed: int, n: int, f: float) -> None:
    x = _phase(seed, n)
    ramp = f * np.arange(n)
    for stat in ("adev", "oadev", "mdev", "hdev", "ohdev"):
        a = ta.STATISTICS[stat](x, 1.0, "phase", "all")
        b = ta.STATISTICS[stat](x + ramp, 1.0, "phase", "all")
        np.testing.assert_allclose(b[1], a[1], rtol=1e-6, err_msg=stat)


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=sizes, d=st.floats(-1e-9, 1e-9))
def test_hadamard_ignores_linear_frequency_drift(seed: int, n: int, d: float) -> None:
    x = _phase(seed, n)
    t = np.arange(n, dtype=float)
    drift = 0.5 * d * t**2  # phase of a linear frequency drift
    for stat in ("hdev", "ohdev"):
        a = ta.STATISTICS[stat](x, 1.0, "phase", "all")
        b = ta.STATISTICS[stat](x + drift, 1.0, "phase", "all")
        np.testing.assert_allclose(b[1], a[1], rtol=1e-6, err_msg=stat)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, n=st.integers(60, 200), gap=st.integers(0, 59), m=st.integers(1, 8))
def test_gap_skips_exactly_the_terms_touching_it(seed: int, n: int, gap: int, m: int) -> None:
    x = _phase(seed, n)
    xg = x.copy()
    xg[gap] = np.nan
    # OADEV: terms x[i], x[i+m], x[i+2m]; those with gap in {i, i+m, i+2m} go.
    i = np.arange(n - 2 * m)
    keep = (i != gap) & (i + m != gap) & (i + 2 * m != gap)
    v = (x[i + 2 * m] - 2 * x[i + m] + x[i])[keep]
    want = np.sqrt(np.mean(v**2) / 2) / m
    taus, devs, _, ns = ta.oadev(xg, 1.0, "phase", [m])
    assert ns[0] == keep.sum()
    np.testing.assert_allclose(devs[0], want, rtol=1e-9)
    # MDEV: a term uses x[i .. i+3m-1]
    j = np.arange(n - 3 * m + 1)
    keep_m = (gap < j) | (gap > j + 3 * m - 1)
    _, _, _, nsm = ta.mdev(xg, 1.0, "phase", [m])
    assert nsm[0] == keep_m.sum()


def test_frequency_gap_skips_terms_spanning_it() -> None:
    y = np.random.default_rng(3).standard_normal(50)
    yg = y.copy()
    yg[20] = np.nan
    taus, devs, _, ns = ta.adev(yg, 1.0, "freq", [1])
    # ADEV at m = 1 from frequency: pairs (y_k, y_k+1); two pairs touch y_20
    pairs = [(y[k + 1] - y[k]) for k in range(49) if k != 20 and k + 1 != 20]
    assert ns[0] == len(pairs)
    np.testing.assert_allclose(devs[0], np.sqrt(np.mean(np.square(pairs)) / 2), rtol=1e-9)


def test_all_nan_never_silent() -> None:
    import pytest

    with pytest.raises(ValueError):
        ta.oadev(np.full(100, np.nan))
