"""The intersection algorithm (RFC 5905 11.2.1) and the leap/UTC comparison, on known intervals."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from timemon.analysis.selection import (
    LEAP_INSERT,
    LEAP_NONE,
    Candidate,
    check_leap,
    select,
    tai_utc_from_gps,
)


def cands(*pairs: tuple[float, float]) -> list[Candidate]:
    return [Candidate(f"s{i}", "ntp", off, dist) for i, (off, dist) in enumerate(pairs)]


def test_one_off_by_50_ms_is_the_falseticker() -> None:
    sel = select(cands((0.0, 1e-4), (2e-5, 1e-4), (-1e-5, 1e-4), (3e-5, 1e-4), (0.05, 1e-4)))
    assert sel.majority and sel.falsetickers == {"s4"}
    assert sel.spread == pytest.approx(4e-5)
    assert sel.low is not None and sel.high is not None
    assert sel.low <= 0.0 <= sel.high


@pytest.mark.parametrize("offsets", [(0.0, 1e-5, 0.05, 0.10, 0.15), (0.0, 1e-5, -0.05, 0.05, 0.10)])
def test_three_of_five_off_is_no_majority(offsets: tuple[float, ...]) -> None:
    sel = select(cands(*[(o, 1e-4) for o in offsets]))
    assert not sel.majority
    assert sel.falsetickers == frozenset() and sel.spread is None and sel.truechimers == ()


def test_three_off_together_are_the_majority() -> None:
    # The algorithm cannot know better: three agreeing sources outvote two.
    sel = select(cands((0.0, 1e-4), (0.0, 1e-4), (0.05, 1e-4), (0.05, 1e-4), (0.05, 1e-4)))
    assert sel.majority and sel.falsetickers == {"s0", "s1"}


def test_wide_interval_is_a_truechimer_and_the_midpoint_rule() -> None:
    sel = select(cands((0.0, 1.0), (0.01, 1e-3), (0.012, 1e-3)))
    assert sel.majority and not sel.falsetickers
    # RFC 5905: the intersection must also hold the midpoints of all but f candidates;
    # two intervals that only touch (at 1.0) do not.
    assert not select(cands((0.0, 1.0), (2.0, 1.0))).majority
    assert select(cands((0.0, 1.0), (1.0, 1.0))).majority


def test_two_disjoint_is_no_majority_and_one_is_its_own() -> None:
    assert not select(cands((0.0, 1e-3), (1.0, 1e-3))).majority
    one = select(cands((0.3, 1e-3)))
    assert one.majority and one.spread == 0.0
    assert not select([]).majority


def test_bad_distances_are_ignored() -> None:
    sel = select(cands((0.0, 1e-3), (0.0, float("nan")), (0.0, -1.0)))
    assert [c.source for c in sel.candidates] == ["s0"]


@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0, 0.5)), min_size=1, max_size=9),
       st.randoms(use_true_random=False))
def test_properties(pairs: list[tuple[float, float]], rnd: random.Random) -> None:
    shuffled = list(cands(*pairs))
    rnd.shuffle(shuffled)
    sel, again = select(cands(*pairs)), select(shuffled)
    assert (sel.majority, sel.falsetickers) == (again.majority, again.falsetickers)  # order-free
    if sel.majority:
        assert sel.low is not None and sel.high is not None and sel.low <= sel.high
        chimers = sel.truechimers
        assert 2 * len(chimers) > len(sel.candidates)  # a majority, by definition
        for c in chimers:  # every truechimer's interval reaches the intersection
            assert c.low <= sel.high and c.high >= sel.low
        # More than half the midpoints lie in the intersection (RFC 5905's midpoint rule).
        inside = [c for c in sel.candidates if sel.low <= c.offset <= sel.high]
        assert 2 * len(inside) > len(sel.candidates)


def test_leap_and_utc() -> None:
    assert tai_utc_from_gps(18) == 37
    ok = check_leap({"gnss0": 37, "ptp0": 37}, {"ntp1": LEAP_NONE, "chronyd": LEAP_NONE})
    assert ok.consistent and ok.disagreeing == ()
    bad = check_leap({"gnss0": 37, "ptp0": 36, "kernel": 37}, {})
    assert not bad.consistent and bad.disagreeing == ("ptp0",)
    assert "ptp0 36 s" in bad.describe()
    tie = check_leap({"gnss0": 37, "ptp0": 36}, {})
    assert tie.disagreeing == ("gnss0", "ptp0")  # two against each other: both named
    leap = check_leap({}, {"a": LEAP_INSERT, "b": LEAP_NONE, "c": LEAP_NONE})
    assert leap.disagreeing == ("a",) and "a insert" in leap.describe()
