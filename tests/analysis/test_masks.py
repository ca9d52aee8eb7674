"""ITU-T MTIE/TDEV masks: breakpoints from the tables, ranges, violations, names.

Expected values are written out by hand from the Recommendations' tables (in
the tables' own units, ns), not computed with the implementation:

* G.811 (09/1997) Table 1 (MTIE, us) and Table 2 (TDEV, ns);
* G.813 (03/2003) option 1, constant temperature: Table 1 (MTIE), Table 3 (TDEV);
* G.8272 (11/2018) Tables 1 and 3 (PRTC-A), Tables 2 and 4 (PRTC-B);
* G.8272.1 (2016) Amd. 1 (08/2017) Tables 1 and 2 (ePRTC).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from timemon.analysis import masks as M

NAN = math.nan
INF = math.inf

# (mask, statistic, breakpoint tau [s], limit just below / at it [ns], limit just above [ns])
# NaN on one side = the edge of the table's range.
BREAKPOINTS = [
    # G.811 Table 1: 0.275e-3 tau + 0.025 us (0.1 < tau <= 1000), 1e-5 tau + 0.29 us (tau > 1000)
    ("G.811", "mtie", 0.1, NAN, 25.0275),
    ("G.811", "mtie", 1000.0, 300.0, 300.0),
    # G.811 Table 2: 3 ns, 0.03 tau ns, 30 ns up to 10 000 s
    ("G.811", "tdev", 0.1, NAN, 3.0),
    ("G.811", "tdev", 100.0, 3.0, 3.0),
    ("G.811", "tdev", 1000.0, 30.0, 30.0),
    ("G.811", "tdev", 10_000.0, 30.0, NAN),
    # G.813 Table 1: 40 ns, 40 tau^0.1 ns, 25.25 tau^0.2 ns up to 1000 s
    ("G.813", "mtie", 0.1, NAN, 40.0),
    ("G.813", "mtie", 1.0, 40.0, 40.0),
    ("G.813", "mtie", 100.0, 63.3957, 63.4251),
    ("G.813", "mtie", 1000.0, 100.5221, NAN),
    # G.813 Table 3: 3.2 ns, 0.64 tau^0.5 ns, 6.4 ns up to 1000 s
    ("G.813", "tdev", 0.1, NAN, 3.2),
    ("G.813", "tdev", 25.0, 3.2, 3.2),
    ("G.813", "tdev", 100.0, 6.4, 6.4),
    ("G.813", "tdev", 1000.0, 6.4, NAN),
    # G.8272 Table 1 (PRTC-A): 0.275e-3 tau + 0.025 us up to 273 s, then 0.100 us
    ("G.8272-PRTC-A", "mtie", 0.1, NAN, 25.0275),
    ("G.8272-PRTC-A", "mtie", 273.0, 100.075, 100.0),
    # G.8272 Table 3 (PRTC-A): 3 ns, 0.03 tau ns, 30 ns up to 10 000 s
    ("G.8272-PRTC-A", "tdev", 0.1, NAN, 3.0),
    ("G.8272-PRTC-A", "tdev", 100.0, 3.0, 3.0),
    ("G.8272-PRTC-A", "tdev", 1000.0, 30.0, 30.0),
    ("G.8272-PRTC-A", "tdev", 10_000.0, 30.0, NAN),
    # G.8272 Table 2 (PRTC-B): 0.275e-3 tau + 0.025 us up to 54.5 s, then 0.040 us
    ("G.8272-PRTC-B", "mtie", 0.1, NAN, 25.0275),
    ("G.8272-PRTC-B", "mtie", 54.5, 39.9875, 40.0),
    # G.8272 Table 4 (PRTC-B): 1 ns, 0.01 tau ns, 5 ns up to 100 000 s
    ("G.8272-PRTC-B", "tdev", 0.1, NAN, 1.0),
    ("G.8272-PRTC-B", "tdev", 100.0, 1.0, 1.0),
    ("G.8272-PRTC-B", "tdev", 500.0, 5.0, 5.0),
    ("G.8272-PRTC-B", "tdev", 100_000.0, 5.0, NAN),
    # G.8272.1 Table 1: 4 ns, 0.11114 tau + 3.89 ns, 0.0375e-3 tau + 15 ns up to 4e5 s, then 30 ns
    ("G.8272.1-ePRTC", "mtie", 0.1, NAN, 4.0),
    ("G.8272.1-ePRTC", "mtie", 1.0, 4.0, 4.00114),
    ("G.8272.1-ePRTC", "mtie", 100.0, 15.004, 15.00375),
    ("G.8272.1-ePRTC", "mtie", 4e5, 30.0, 30.0),
    # G.8272.1 Table 2: 1 ns, 3.33333e-5 tau ns, 10 ns up to 1e6 s
    ("G.8272.1-ePRTC", "tdev", 0.1, NAN, 1.0),
    ("G.8272.1-ePRTC", "tdev", 3e4, 1.0, 0.999999),
    ("G.8272.1-ePRTC", "tdev", 3e5, 9.99999, 10.0),
    ("G.8272.1-ePRTC", "tdev", 1e6, 10.0, NAN),
]

# Points inside segments, and on open-ended last rows (table says "tau > x").
INTERIOR = [
    ("G.811", "mtie", 10.0, 27.75),          # 0.275e-3*10 + 0.025 us
    ("G.811", "mtie", 1e5, 1290.0),          # 1e-5*1e5 + 0.29 us
    ("G.811", "mtie", 1e8, 1000.29e3),       # no upper end
    ("G.811", "tdev", 500.0, 15.0),
    ("G.813", "mtie", 0.5, 40.0),
    ("G.813", "mtie", 10.0, 50.3570),        # 40 * 10^0.1
    ("G.813", "mtie", 500.0, 87.5095),       # 25.25 * 500^0.2
    ("G.813", "tdev", 50.0, 4.52548),        # 0.64 * 50^0.5
    ("G.8272-PRTC-A", "mtie", 1e7, 100.0),   # no upper end
    ("G.8272-PRTC-A", "tdev", 500.0, 15.0),
    ("G.8272-PRTC-B", "mtie", 10.0, 27.75),
    ("G.8272-PRTC-B", "mtie", 1e7, 40.0),    # no upper end
    ("G.8272-PRTC-B", "tdev", 200.0, 2.0),
    ("G.8272.1-ePRTC", "mtie", 10.0, 5.0014),
    ("G.8272.1-ePRTC", "mtie", 1e4, 15.375),
    ("G.8272.1-ePRTC", "mtie", 1e9, 30.0),   # no upper end
    ("G.8272.1-ePRTC", "tdev", 1e5, 3.33333),
]

CONTRACT_NAMES = [  # DESIGN.md: the mask names of config, CLI and the `mask` label
    "G.811", "G.812-I", "G.812-II", "G.812-III", "G.812-IV", "G.812-V", "G.812-VI",
    "G.813", "G.8272-PRTC-A", "G.8272-PRTC-B", "G.8272.1-ePRTC",
]

EPS = 1e-9  # relative step to either side of a breakpoint


def _limit_ns(name: str, stat: str, tau: float) -> float:
    return M.get_mask(name).limit_seconds(stat, tau) / 1e-9


def _check(got: float, want: float, rel: float) -> None:
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, rel=rel)


@pytest.mark.parametrize(("name", "stat", "tau", "below", "above"), BREAKPOINTS)
def test_breakpoint_both_sides(name: str, stat: str, tau: float, below: float,
                               above: float) -> None:
    # tables round to about 5 significant digits; the breakpoint itself belongs to
    # the lower row (lo < tau <= hi)
    _check(_limit_ns(name, stat, tau), below, 2e-6)
    _check(_limit_ns(name, stat, tau * (1 - EPS)), below, 2e-6)
    _check(_limit_ns(name, stat, tau * (1 + EPS)), above, 2e-6)


@pytest.mark.parametrize(("name", "stat", "tau", "want"), INTERIOR)
def test_interior_points(name: str, stat: str, tau: float, want: float) -> None:
    _check(_limit_ns(name, stat, tau), want, 2e-6)


@pytest.mark.parametrize(("name", "stat", "tau", "below", "above"),
                         [b for b in BREAKPOINTS if not (math.isnan(b[3]) or math.isnan(b[4]))])
def test_segments_meet(name: str, stat: str, tau: float, below: float, above: float) -> None:
    # where two rows meet, the published formulas agree to the tables' rounding
    # (worst case: G.8272 PRTC-A at 273 s, 100.075 vs 100 ns)
    mask = M.get_mask(name)
    left = mask.limit_seconds(stat, tau)
    right = mask.limit_seconds(stat, tau * (1 + 1e-12))
    assert right == pytest.approx(left, rel=1e-3)


def test_every_table_breakpoint_is_tested() -> None:
    tested = {(n, s, t) for n, s, t, _, _ in BREAKPOINTS}
    for mask in M.MASKS.values():
        for stat in M.STATISTICS:
            segs = mask.segments(stat)
            edges = {s.lo for s in segs} | {s.hi for s in segs if math.isfinite(s.hi)}
            assert {(mask.name, stat, e) for e in edges} <= tested, (mask.name, stat)


@pytest.mark.parametrize("name", list(M.MASKS))
def test_nan_outside_range(name: str) -> None:
    mask = M.get_mask(name)
    for stat in M.STATISTICS:
        lo, hi = mask.tau_range(stat)
        outside = np.array([-1.0, 0.0, lo / 2, lo, NAN])
        assert np.isnan(mask.limit_seconds(stat, outside)).all()
        if math.isfinite(hi):
            assert np.isnan(mask.limit_seconds(stat, [hi * 1.001, hi * 10])).all()
        else:
            assert np.isfinite(mask.limit_seconds(stat, [1e6, 1e12])).all()


def test_scalar_and_array_shapes() -> None:
    mask = M.get_mask("G.811")
    got = mask.mtie_seconds(10.0)
    assert isinstance(got, float)
    assert got == pytest.approx(27.75e-9)
    grid = np.array([[0.05, 10.0], [1e5, 50.0]])
    mt = mask.mtie_seconds(grid)
    td = mask.tdev_seconds(grid)
    assert isinstance(mt, np.ndarray) and mt.shape == (2, 2)
    np.testing.assert_allclose(mt / 1e-9, [[NAN, 27.75], [1290.0, 38.75]], rtol=1e-9)
    np.testing.assert_allclose(td / 1e-9, [[NAN, 3.0], [NAN, 3.0]], rtol=1e-9)
    assert isinstance(mask.tdev_seconds([10.0]), np.ndarray)


def test_mask_without_a_table_is_all_nan() -> None:
    only_tdev = M.Mask(name="x", title="x", reference="x",
                       tdev=(M.Segment(0.1, 10.0, a=1e-9),))
    assert only_tdev.has_tdev and not only_tdev.has_mtie
    assert only_tdev.tau_range("mtie") is None
    assert math.isnan(only_tdev.mtie_seconds(1.0))
    assert np.isnan(only_tdev.mtie_seconds([0.5, 1.0, 5.0])).all()
    assert not M.violations(only_tdev, "mtie", [1.0, 2.0], [1.0, 1.0]).any()
    assert M.violations(only_tdev, "tdev", [1.0, 2.0], [0.5e-9, 2e-9]).tolist() == [False, True]


def test_all_masks_have_both_tables() -> None:
    for mask in M.MASKS.values():
        assert mask.has_mtie and mask.has_tdev, mask.name
        assert mask.reference.startswith("ITU-T ") and mask.provenance


def test_violations_on_arrays() -> None:
    mask = M.get_mask("G.8272-PRTC-A")
    taus = np.array([0.05, 1.0, 1.0, 100.0, 273.0, 273.0, 1e6, 10.0, 10.0])
    # MTIE limits there: none, 25.275 ns, 25.275, 52.5, 100.075, 100.075, 100, 27.75, 27.75
    values = np.array([1.0, 25.2e-9, 25.4e-9, 52.5e-9, 100.07e-9, 100.08e-9, 101e-9, NAN,
                       1e-6])
    got = M.violations(mask, "mtie", taus, values)
    assert got.dtype == np.bool_ and got.shape == taus.shape
    assert got.tolist() == [False, False, True, False, False, True, True, False, True]
    # TDEV has an upper end (10 000 s): beyond it nothing is a violation
    got = M.violations(mask, "tdev", [50.0, 500.0, 2e4], [3.1e-9, 14.9e-9, 1.0])
    assert got.tolist() == [True, False, False]


def test_violations_rejects_bad_input() -> None:
    mask = M.get_mask("G.811")
    with pytest.raises(ValueError, match="shape"):
        M.violations(mask, "mtie", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="statistic"):
        M.violations(mask, "adev", [1.0], [1.0])  # type: ignore[arg-type]


def test_names_order_and_contract() -> None:
    names = list(M.MASKS)
    assert names == ["G.811", "G.813", "G.8272-PRTC-A", "G.8272-PRTC-B", "G.8272.1-ePRTC"]
    assert all(M.MASKS[n].name == n for n in names)
    # every contract name is either available or reserved with a reason, nothing else
    assert set(names) | set(M.UNAVAILABLE) == set(CONTRACT_NAMES)
    assert not set(names) & set(M.UNAVAILABLE)
    assert all(M.UNAVAILABLE.values())


def test_unknown_mask() -> None:
    with pytest.raises(M.UnknownMask) as err:
        M.get_mask("G.8272-PRTC-C")
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    assert "G.8272-PRTC-C" in msg
    for name in M.MASKS:
        assert name in msg
    with pytest.raises(M.UnknownMask, match="not available"):
        M.get_mask("G.812-I")
    with pytest.raises(M.UnknownMask):
        M.get_mask("g.811")  # names are exact


def test_segments_must_be_contiguous() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        M.Mask(name="x", title="x", reference="x",
               mtie=(M.Segment(0.1, 1.0), M.Segment(2.0, 3.0)))
    with pytest.raises(ValueError):
        M.Segment(1.0, 1.0)
    with pytest.raises(ValueError):
        M.Mask(name="x", title="x", reference="x")
