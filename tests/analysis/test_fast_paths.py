"""The fast algorithms against straightforward reference implementations kept here.

Each reference follows the definition term by term (SP 1065 eqs. 14, 25, 27, 29),
window by window, with no algebra shared with the library.
"""

from __future__ import annotations

import numpy as np
import pytest
import timemon.analysis as ta
from timemon.analysis import stability
from timemon.analysis._prepare import to_phase
from timemon.analysis._reflected import reflected_total

# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------


def ref_window_sums(v: np.ndarray, m: int) -> np.ndarray:
    """Per window w = v[n : n+3m]: detrend by the half-means slope, reflect
    (rev, w, rev), and sum the squares of the 6m second differences of m-point
    averages (Howe's MTOT / HTOT inner sum), in the input's dtype."""
    length = 3 * m
    h = length // 2
    dist = length / 2 if length % 2 == 0 else (length + 1) / 2
    t = np.arange(length, dtype=v.dtype)
    out = []
    for n in range(v.size - length + 1):
        w = v[n : n + length]
        slope = (w[length - h :].mean() - w[:h].mean()) / dist
        z = w - slope * t
        e = np.concatenate((z[::-1], z, z[::-1]))
        avg = np.array([e[j : j + m].sum() for j in range(e.size - m + 1)]) / m
        d = avg[2 * m : 8 * m] - 2 * avg[m : 7 * m] + avg[: 6 * m]
        out.append(np.sum(d * d))
    return np.array(out, dtype=v.dtype)


def ref_mdev(x: np.ndarray, m: int) -> float:
    terms = [
        sum(x[i + 2 * m] - 2 * x[i + m] + x[i] for i in range(j, j + m))
        for j in range(x.size - 3 * m + 1)
    ]
    return float(np.sqrt(np.mean(np.square(terms)) / 2.0) / m / m)


def ref_totdev(x: np.ndarray, m: int) -> tuple[float, int]:
    """SP 1065 eq. 25 with the odd reflection written out; NaN points skip their terms."""
    n = x.size

    def star(k: int) -> float:
        if k < 0:
            return 2 * x[0] - x[-k]
        if k > n - 1:
            return 2 * x[n - 1] - x[2 * (n - 1) - k]
        return x[k]

    v = [star(i + m) - 2 * star(i) + star(i - m) for i in range(1, n - 1)]
    v = [d for d in v if np.isfinite(d)]
    return float(np.sqrt(np.mean(np.square(v)) / 2.0) / m), len(v)


def phase_noise(n: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n)
    if kind == "wpm":
        return w * 1e-9
    if kind == "rwpm":
        return np.cumsum(w) * 1e-9
    return np.cumsum(np.cumsum(w)) * 1e-12  # random-walk FM


# ---------------------------------------------------------------------------
# MTOT / HTOT inner sums
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [7, 20, 61, 150])
def test_reflected_total_matches_window_by_window(n: int) -> None:
    rng = np.random.default_rng(n)
    v = np.cumsum(rng.standard_normal(n)) + 5.0
    for m in range(1, (n - 1) // 3 + 1):
        per = ref_window_sums(v, m)
        total, count = reflected_total(v, m)
        assert count == per.size
        np.testing.assert_allclose(total, per.sum(), rtol=1e-12)
        # an arbitrary subset of the windows (as gaps leave): runs of any length
        ok = rng.random(per.size) > 0.35
        total, count = reflected_total(v, m, ok)
        assert count == ok.sum()
        np.testing.assert_allclose(total, per[ok].sum(), rtol=1e-12, atol=1e-12 * per.sum())


@pytest.mark.parametrize("kind", ["wpm", "rwpm", "rwfm"])
def test_reflected_total_in_extended_precision(kind: str) -> None:
    # The longdouble reference has ~3 more digits than float64: the fast sum
    # must agree with it to ~1e-13 for every noise shape and m.
    x = to_phase(phase_noise(400, 3, kind) + 1e-3, 1.0, "phase").x
    for m in (1, 2, 5, 16, 64, 133):
        want = ref_window_sums(x.astype(np.longdouble), m).sum()
        got, _ = reflected_total(x, m)
        assert abs(got / float(want) - 1.0) < 1e-13, (kind, m)


def test_mtotdev_and_htotdev_skip_windows_touching_a_gap() -> None:
    x = phase_noise(120, 4, "rwpm")
    xg = x.copy()
    xg[[10, 57, 58]] = np.nan
    for m in (2, 4, 8):
        taus, devs, _, ns = ta.mtotdev(xg, 1.0, "phase", [m], bias_correction=False)
        p = to_phase(xg, 1.0, "phase")
        per = ref_window_sums(p.x, m)
        starts = np.arange(per.size)
        keep = np.array([not np.isnan(xg[s : s + 3 * m]).any() for s in starts])
        assert ns[0] == keep.sum()
        want = np.sqrt(np.mean(per[keep] / (6 * m)) / 2) / m
        np.testing.assert_allclose(devs[0], want, rtol=1e-12)
        # HTOT: windows of 3m frequency points = 3m + 1 phase points
        taus, devs, _, ns = ta.htotdev(xg, 1.0, "phase", [m], bias_correction=False)
        per = ref_window_sums(np.diff(p.x), m)
        keep = np.array([not np.isnan(xg[s : s + 3 * m + 1]).any() for s in range(per.size)])
        assert ns[0] == keep.sum()
        np.testing.assert_allclose(devs[0], np.sqrt(np.mean(per[keep] / (6 * m)) / 6), rtol=1e-12)


# ---------------------------------------------------------------------------
# blocked differences, MDEV, TOTDEV
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3])
def test_diff_sumsq_matches_nested_differences(order: int) -> None:
    # 70000 points: several blocks, and a strided view as the non-overlapping estimators use
    x = phase_noise(70_000, 5, "rwpm")
    for lag in (1, 3, 1000, 20_000):
        d = x
        for _ in range(order):
            d = d[lag:] - d[:-lag]
        s, n = stability._diff_sumsq(x, lag, order)
        assert n == d.size
        np.testing.assert_allclose(s, np.dot(d, d), rtol=1e-13)
    xs = x[::7]
    s, n = stability._diff_sumsq(xs, 1, order)
    d = np.diff(xs, order)
    assert n == d.size
    np.testing.assert_allclose(s, np.dot(d, d), rtol=1e-13)


@pytest.mark.parametrize("kind", ["wpm", "rwpm", "rwfm"])
def test_mdev_power_of_two_and_running_sum_paths(kind: str) -> None:
    x = phase_noise(600, 6, kind)
    ms = [1, 2, 3, 4, 8, 16, 24, 32, 64, 128, 150]  # powers of two and others
    taus, devs, _, _ = ta.mdev(x, 1.0, "phase", ms)
    xr = to_phase(x, 1.0, "phase").x
    for tau, dev in zip(taus, devs, strict=True):
        np.testing.assert_allclose(dev, ref_mdev(xr, int(tau)), rtol=1e-11)


def test_mdev_blocks_cover_a_long_series() -> None:
    x = phase_noise(100_000, 7, "rwpm")
    xr = to_phase(x, 1.0, "phase").x
    taus, devs, _, _ = ta.mdev(x, 1.0, "phase", [1, 2, 8, 64, 8192, 16384])
    for tau, dev in zip(taus, devs, strict=True):
        m = int(tau)
        v = (xr[2 * m :] - xr[m:-m]) - (xr[m:-m] - xr[: -2 * m])
        c = np.concatenate(([0.0], np.cumsum(v.astype(np.longdouble))))
        t = (c[m:] - c[:-m]).astype(np.float64)
        np.testing.assert_allclose(dev, np.sqrt(np.mean(t * t) / 2) / m / m, rtol=1e-11)


@pytest.mark.parametrize("n", [3, 4, 5, 9, 10, 33, 200])
def test_totdev_matches_reflection_written_out(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(4):
        x = np.cumsum(rng.standard_normal(n))
        if trial % 2 and n > 4:
            x[rng.integers(0, n, 1 + n // 10)] = np.nan
        if np.isfinite(x).sum() < 2:
            continue
        taus, devs, _, ns = ta.totdev(x, 1.0, "phase", "all", bias_correction=False)
        p = to_phase(x, 1.0, "phase")
        xr = np.where(p.bad, np.nan, p.x) if p.bad is not None else p.x
        for tau, dev, cnt in zip(taus, devs, ns, strict=True):
            want, want_n = ref_totdev(xr, int(tau))
            assert cnt == want_n
            np.testing.assert_allclose(dev, want, rtol=1e-12)


def test_extended_slices_every_range() -> None:
    x = np.arange(10.0) ** 2
    n = x.size
    star = [2 * x[0] - x[-k] if k < 0 else 2 * x[-1] - x[2 * (n - 1) - k] if k > n - 1 else x[k]
            for k in range(-(n - 2), 2 * n - 2)]
    for k0 in range(-(n - 2), 2 * n - 2):
        for cnt in range(1, 2 * n - 2 - k0):
            got = stability._extended(x, k0, cnt)
            np.testing.assert_array_equal(got, star[k0 + n - 2 : k0 + n - 2 + cnt])


def test_fast_phase_conversion_matches_general_path() -> None:
    x = phase_noise(100_000, 8, "rwpm") + 1e-3 + 1e-7 * np.arange(100_000)
    p = to_phase(x, 1.0, "phase")
    i = np.arange(x.size, dtype=np.float64)
    want = (x - x[0]) - ((x[-1] - x[0]) / (x.size - 1)) * i
    np.testing.assert_array_equal(p.x, want)
    assert p.bad is None
