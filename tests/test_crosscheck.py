"""Cross-checks over real source objects: five NTP responders (the project's simulator),
a GNSS capture's leap seconds against a PTP UTC offset, the error bounds per kind."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from gnss_support import capture_body
from test_ptp_mgmt import ALL_VECTORS, vector
from timemon.probes import ptp_mgmt as mgmt
from timemon.probes.gnss import GnssSource
from timemon.probes.gnss_decode import Epoch, EpochDecoder, wanted
from timemon.probes.gnss_stream import GnssStreamError, split_bytes
from timemon.probes.ntp import NtpSource
from timemon.probes.ptp import PtpSource, PtpState

from timemon import crosscheck
from timemon.address import HostPort
from timemon.crosscheck import CrossChecker, collect, compute
from timemon.exporter import AgentState
from timemon.families import Families
from timemon.simulator import ResponderClock, ResponderThread
from timemon.source import Source


def poll_ntp(responders: ResponderThread, offsets: list[float]) -> list[NtpSource]:
    """One NtpSource per responder whose clock is true + offset, polled three times."""
    sources = []
    for i, offset in enumerate(offsets):
        r = responders.add(clock=ResponderClock(offset=offset, seed=i + 1))
        sources.append(NtpSource(f"ntp{i}", HostPort("127.0.0.1", r.port), interval=1.0,
                                 lab=True, interleaved=False))

    async def run() -> None:
        for _ in range(3):
            for s in sources:
                await s.poll_once()

    asyncio.run(run())
    for s, offset in zip(sources, offsets, strict=True):
        assert s.up and s.offset == pytest.approx(-offset, abs=2e-3)
    return sources


def families(state: AgentState) -> dict[tuple[str, tuple], float]:
    out = Families()
    collect(out, state.crosscheck)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in out for s in f.samples}


def test_the_one_50_ms_off_is_the_falseticker(responders: ResponderThread,
                                              caplog: pytest.LogCaptureFixture) -> None:
    sources = poll_ntp(responders, [0.0, 0.0, 0.0, 0.0, 0.050])
    state = AgentState()
    state.sources = tuple(sources)
    with caplog.at_level(logging.WARNING, logger="timemon.crosscheck"):
        result = CrossChecker(state).check_once()
    sel = result.selection
    assert sel.majority and sel.falsetickers == {"ntp4"}
    assert sel.spread is not None and sel.spread < 1e-3  # the four agree to loopback noise
    assert "falseticker(s): ntp4" in caplog.text
    got = families(state)
    for i in range(5):
        assert got[("timemon_falseticker", (("kind", "ntp"), ("source", f"ntp{i}")))] == \
            (1.0 if i == 4 else 0.0)
    assert got[("timemon_reference_majority", ())] == 1.0
    assert got[("timemon_reference_spread_seconds", ())] == sel.spread
    assert got[("timemon_leap_consistent", ())] == 1.0  # all five say "no leap"



def test_the_scrape_text_follows_each_check_and_is_kept_between(
        responders: ResponderThread) -> None:
    sources = poll_ntp(responders, [0.0, 0.0, 0.0, 0.0, 0.050])
    state = AgentState()
    state.sources = tuple(sources)
    checker = CrossChecker(state)

    def scrape() -> list[str]:
        out = Families(text=True)
        collect(out, state.crosscheck)
        return [line for line in out.render().decode().splitlines()
                if line.startswith("timemon_falseticker{")]

    checker.check_once()
    first = scrape()
    assert sum(line.endswith(" 1.0") for line in first) == 1  # ntp4
    kept, marks = crosscheck._kept, crosscheck._kept_marks
    assert scrape() == first and crosscheck._kept is kept  # the same result: reused
    checker.check_once()  # a new result, with the same candidates and marks
    assert scrape() == first
    assert crosscheck._kept is not kept and crosscheck._kept_marks is marks
    sources[4].set_up(False)  # down: no longer a candidate, so no falseticker line
    checker.check_once()
    second = scrape()
    assert len(second) == 4 and all(line.endswith(" 0.0") for line in second)
    assert crosscheck._kept_marks is not marks

@pytest.mark.parametrize("offsets", [
    [0.0, 0.0, 0.050, 0.100, 0.150],  # three off the same way, by different amounts
    [0.0, 0.0, -0.050, 0.050, 0.100],  # three off in different directions
])
def test_three_of_five_off_reports_no_majority(responders: ResponderThread,
                                               offsets: list[float],
                                               caplog: pytest.LogCaptureFixture) -> None:
    state = AgentState()
    state.sources = tuple(poll_ntp(responders, offsets))
    with caplog.at_level(logging.WARNING, logger="timemon.crosscheck"):
        result = CrossChecker(state).check_once()
    assert not result.selection.majority
    assert "no majority among 5 references" in caplog.text
    got = families(state)
    assert got[("timemon_reference_majority", ())] == 0.0
    # Nobody is called a falseticker, and no spread is claimed.
    assert not any(name == "timemon_falseticker" for name, _ in got)
    assert ("timemon_reference_spread_seconds", ()) not in got


def test_down_sources_take_no_part(responders: ResponderThread) -> None:
    sources = poll_ntp(responders, [0.0, 0.0, 0.050])
    sources[2].set_up(False)
    result = compute(sources)
    assert [c.source for c in result.selection.candidates] == ["ntp0", "ntp1"]
    assert result.selection.majority and not result.selection.falsetickers


# -- leap seconds: a GNSS capture against a PTP grandmaster's UTC offset ------------------


def capture_epoch(name: str) -> Epoch:
    decoder, epochs = EpochDecoder(), []
    for event in split_bytes(capture_body(name), decode=wanted):
        if not isinstance(event, GnssStreamError):
            epochs += decoder.feed(event)
    last = decoder.flush()
    epochs += [last] if last else []
    with_leap = [e for e in epochs if e.leap_seconds is not None]
    assert with_leap, name
    return with_leap[-1]


def ptp_state(utc_offset: int, accuracy: int = 0xFE) -> PtpState:
    """A PtpState from replies captured from ptp4l 3.1.1, with the grandmaster's
    currentUtcOffset (ptp4l's ``utc_offset`` option) and clockAccuracy replaced."""
    sets = {mid: mgmt.decode_message(vector(mid)).dataset() for mid in ALL_VECTORS}
    parent = sets[mgmt.PARENT_DATA_SET]
    tp = dataclasses.replace(sets[mgmt.TIME_PROPERTIES_DATA_SET], current_utc_offset=utc_offset,
                             utc_offset_valid=True)
    return PtpState(
        t_ns=1_795_856_294_546_804_711, default=sets[mgmt.DEFAULT_DATA_SET],
        current=sets[mgmt.CURRENT_DATA_SET],
        parent=dataclasses.replace(parent, gm_quality=mgmt.ClockQuality(6, accuracy, 0x4E5D)),
        time_properties=tp, ports=(sets[mgmt.PORT_DATA_SET],),
        time_status=sets[mgmt.TIME_STATUS_NP], port_stats=())


def gnss_with(epoch: Epoch) -> GnssSource:
    source = GnssSource("gnss0", "/dev/null")
    source.epoch = epoch
    return source


def ptp_with(state: PtpState) -> PtpSource:
    source = PtpSource("ptp0", "/nonexistent")
    source._update(state)
    return source


@pytest.mark.parametrize("capture", ["ublox-zed-f9t-ubx_nmea_l5.log", "u-blox-m8t-time.log"])
def test_gnss_leap_seconds_against_ptp_utc_offset(capture: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    epoch = capture_epoch(capture)
    assert epoch.leap_seconds == 18  # GPS - UTC in 2025, as gpsd's .chk says
    agree = compute([gnss_with(epoch), ptp_with(ptp_state(37))])
    assert agree.leap.consistent and dict(agree.leap.tai_utc) == {"gnss0": 37, "ptp0": 37}
    state = AgentState()
    state.sources = (gnss_with(epoch), ptp_with(ptp_state(36)))  # a stale utc_offset
    with caplog.at_level(logging.WARNING, logger="timemon.crosscheck"):
        result = CrossChecker(state).check_once()
    assert not result.leap.consistent
    assert set(result.leap.disagreeing) == {"gnss0", "ptp0"}  # one against one: both named
    assert "gnss0 37 s" in caplog.text and "ptp0 36 s" in caplog.text
    assert families(state)[("timemon_leap_consistent", ())] == 0.0


def test_the_odd_one_is_named(responders: ResponderThread) -> None:
    epoch = capture_epoch("u-blox-m8t-time.log")
    ptp_a, ptp_b = ptp_with(ptp_state(37)), ptp_with(ptp_state(36))
    ptp_b.name = "ptp1"
    result = compute([gnss_with(epoch), ptp_a, ptp_b])
    assert result.leap.disagreeing == ("ptp1",)


# -- error bounds and correctness intervals per kind ----------------------------------------


def test_ptp_error_bound_from_clock_accuracy_and_path_delay() -> None:
    source = ptp_with(ptp_state(37, accuracy=0x21))  # within 100 ns
    assert source.offset == pytest.approx(656e-9)  # what pmc printed for this capture
    assert source.root_distance == pytest.approx(100e-9 + 2790e-9)
    assert source.error_bound == pytest.approx(656e-9 + 100e-9 + 2790e-9)
    unknown = ptp_with(ptp_state(37, accuracy=0xFE))
    assert unknown.error_bound is None and unknown.root_distance is None


def test_gnss_error_bound_from_tacc_and_qerr() -> None:
    epoch = capture_epoch("u-blox-m8t-time.log")
    assert epoch.time_accuracy_seconds and epoch.qerr_seconds is not None
    source = gnss_with(epoch)
    source._accept(1_000_000_000, 2e-6, "pps")
    expected = epoch.time_accuracy_seconds + abs(epoch.qerr_seconds)
    assert source.root_distance == pytest.approx(expected)
    assert source.error_bound == pytest.approx(2e-6 + expected)
    source._accept(2_000_000_000, 0.120, "serial")  # latency tAcc does not cover
    assert source.error_bound is None and source.root_distance is None


def test_ntp_error_bound_contains_zero_but_the_interval_does_not(
        responders: ResponderThread) -> None:
    (source,) = poll_ntp(responders, [0.050])
    assert source.error_bound is not None and source.root_distance is not None
    assert source.error_bound >= abs(source.offset or 0)  # always contains zero...
    assert abs(source.offset or 0) > source.root_distance  # ...the interval does not


def test_kernel_is_not_a_candidate() -> None:
    class Kernel(Source):
        kind = "kernel"
        is_reference = False

    k = Kernel("kernel", 1.0)
    k.up, k.offset = True, 0.5
    assert compute([k]).selection.candidates == ()
