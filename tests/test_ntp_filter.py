"""RFC 5905 clock filter: minimum-delay pick, jitter, dispersion ageing."""

from __future__ import annotations

import math

import pytest
from timemon.probes.ntp_filter import PHI, ClockFilter, FilterEntry


def test_picks_the_minimum_delay_sample_of_the_last_eight() -> None:
    f = ClockFilter()
    delays = [5e-3, 4e-3, 1e-3, 6e-3, 7e-3, 8e-3, 9e-3, 9.5e-3]
    for i, d in enumerate(delays):
        pick = f.add(FilterEntry(i * 10**9, offset=i * 1e-4, delay=d, dispersion=0.0))
    assert pick.delay == 1e-3 and pick.offset == pytest.approx(2e-4)
    # A ninth sample pushes out the oldest, not the best.
    pick = f.add(FilterEntry(8 * 10**9, offset=0.5, delay=2e-3, dispersion=0.0))
    assert pick.delay == 1e-3
    for _ in range(3):  # after 8 more, the 1 ms sample has left the register
        f.add(FilterEntry(9 * 10**9, offset=0.0, delay=3e-3, dispersion=0.0))
    pick = f.add(FilterEntry(10 * 10**9, offset=0.0, delay=3e-3, dispersion=0.0))
    assert pick.delay == 2e-3


def test_jitter_is_rms_difference_from_the_pick() -> None:
    f = ClockFilter()
    f.add(FilterEntry(0, offset=0.0, delay=1e-3, dispersion=0.0))
    f.add(FilterEntry(0, offset=3e-6, delay=2e-3, dispersion=0.0))
    pick = f.add(FilterEntry(0, offset=-4e-6, delay=3e-3, dispersion=0.0))
    assert pick.offset == 0.0
    assert pick.jitter == pytest.approx(math.sqrt((9e-12 + 16e-12) / 2))


def test_dispersion_ages_at_phi() -> None:
    f = ClockFilter()
    f.add(FilterEntry(0, offset=0.0, delay=1e-3, dispersion=1e-6))
    later = f.pick(now_ns=100 * 10**9)
    assert later.dispersion == pytest.approx((1e-6 + PHI * 100) / 2)


def test_equal_delays_pick_the_earliest_sample() -> None:
    f = ClockFilter()
    for i, offset in enumerate([7e-6, -2e-6, 5e-6]):
        pick = f.add(FilterEntry(i * 10**9, offset=offset, delay=2e-3, dispersion=0.0))
    assert pick.offset == 7e-6 and pick.t_ns == 0
