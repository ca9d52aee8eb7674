"""The NTP probe against the project's responder: known offsets, and every bad reply
rejected, counted, and kept out of the series."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import threading
import time

import pytest
from timemon.probes import ntp, ntp_io
from timemon.probes import ntp_packet as pkt
from timemon.probes.timestamping import read_tx_stamp, receive

from timemon.address import HostPort
from timemon.simulator import ResponderClock, ResponderThread
from timemon.source import Sample, Source

# The responder stamps T3 in Python before sendto: its reply path is a few tens of µs
# longer than the request path, so allow that much bias on top of the chosen noise.
# A median or the clock filter's pick meets it; a single sample need not: a responder
# preempted between its T3 stamp and the send (about one reply in a thousand on a
# loaded 2-vCPU VM, in a thread or a process of its own alike) makes a sample as wrong
# as half the wait.  Single samples are held to ``within_half_the_round_trip`` instead.
TOLERANCE = 300e-6
# NTP timestamps carry 2^-32 s, and the responder's stamps are rounded to it.
ROUNDING = 1e-9


def within_half_the_round_trip(sample: Sample, expected: float, noise: float = 0.0) -> bool:
    """Whether ``expected`` lies within the sample's offset +- delay/2 (+ the responder's
    noise, which moves T2 and T3 alike).  With all four stamps on one clock, as on
    loopback, neither leg of the round trip can be negative, so the error of any
    exchange, late or not, is at most half the round trip: the bound is exact, and
    tight (~10 µs) for the usual sample."""
    return abs(sample.offset - expected) <= sample.delay / 2 + noise + 4 * ROUNDING


def make_source(port: int, host: str = "127.0.0.1", interval: float = 1.0,
                timeout: float = 0.3) -> tuple[ntp.NtpSource, list[Sample]]:
    accepted: list[Sample] = []

    def sink(_src: Source, sample: Sample) -> None:
        accepted.append(sample)

    src = ntp.NtpSource("sim", HostPort(host, port), interval=interval, lab=True,
                        timeout=timeout, sink=sink)
    return src, accepted


async def poll(src: ntp.NtpSource, n: int) -> None:
    for _ in range(n):
        await src.poll_once()


@pytest.mark.parametrize("offset", [0.25, -0.0375, 12.5])
def test_measures_minus_the_responders_offset(responders: ResponderThread, offset: float) -> None:
    r = responders.add(clock=ResponderClock(offset=offset, noise=20e-6, seed=3))
    src, accepted = make_source(r.port)
    asyncio.run(poll(src, 20))
    assert len(accepted) == 20
    median = statistics.median(s.offset for s in accepted)
    assert median == pytest.approx(-offset, abs=TOLERANCE)
    assert src.offset == pytest.approx(-offset, abs=TOLERANCE + 100e-6)
    assert src.up and src.samples_total == 20 and not src.errors
    assert all(0 < s.delay < 0.01 for s in accepted)


def test_measures_the_responders_drift(responders: ResponderThread) -> None:
    drift = 2e-3  # a huge 2000 ppm, so a short test sees it well above the noise
    r = responders.add(clock=ResponderClock(offset=0.01, drift=drift, noise=1e-6))
    src, accepted = make_source(r.port)

    async def run() -> None:
        for _ in range(15):
            await src.poll_once()
            await asyncio.sleep(0.05)

    asyncio.run(run())
    assert len(accepted) == 15
    # Each sample: minus the responder's clock error at the exchange's midpoint, within
    # half its round trip (and the drift over that round trip, ~0.1 ns).
    for s in accepted:
        expected = -r.clock.error_ns(s.t_ns) / 1e9
        assert within_half_the_round_trip(s, expected, noise=6e-6 + drift * s.delay), s
    # The slope, from the exchanges that were not held up: a late reply (see TOLERANCE)
    # is off by up to half its delay and would tilt a 15-point fit by several per cent.
    # The clock filter of RFC 5905 section 10 trusts low-delay samples for the same reason.
    usual = statistics.median(s.delay for s in accepted)
    prompt = [s for s in accepted if s.delay <= 3 * usual]
    assert len(prompt) >= 12
    t = [s.t_ns / 1e9 for s in prompt]
    x = [s.offset for s in prompt]
    slope = statistics.linear_regression(t, x).slope
    assert slope == pytest.approx(-drift, rel=0.05)  # local − reference: minus the drift


def test_ipv6_literal(responders: ResponderThread) -> None:
    r = responders.add(host="::1", clock=ResponderClock(offset=0.5))
    src, accepted = make_source(r.port, host="::1")
    asyncio.run(poll(src, 3))
    assert len(accepted) == 3
    assert statistics.median(s.offset for s in accepted) == pytest.approx(-0.5, abs=TOLERANCE)
    assert all(within_half_the_round_trip(s, -0.5) for s in accepted), accepted


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong_origin", "bad_origin"),
        ("kod_rate_bad_origin", "bad_origin"),
        ("unsync_leap", "unsynchronised"),
        ("stratum16", "unsynchronised"),
        ("zero_transmit", "unsynchronised"),
        ("truncated", "truncated"),
        ("wrong_port", "wrong_port"),
        ("wrong_mode", "bad_mode"),
    ],
)
def test_bad_replies_never_enter_the_series(responders: ResponderThread, mode: str,
                                            reason: str) -> None:
    r = responders.add(clock=ResponderClock(offset=0.1), mode=mode)
    src, accepted = make_source(r.port, timeout=0.2)
    asyncio.run(poll(src, 3))
    assert accepted == []
    assert src.errors[reason] == 3
    assert src.errors["timeout"] == 3  # no genuine reply came
    assert not src.up and src.offset is None


@pytest.mark.parametrize("mode", ["wrong_origin", "wrong_port", "garbage", "truncated"])
def test_a_spoof_racing_the_genuine_reply_loses(responders: ResponderThread, mode: str) -> None:
    r = responders.add(clock=ResponderClock(offset=0.1), mode=mode, also_genuine=True)
    src, accepted = make_source(r.port)
    asyncio.run(poll(src, 5))
    assert len(accepted) == 5
    assert all(within_half_the_round_trip(s, -0.1) for s in accepted), accepted
    assert sum(src.errors.values()) == 5  # one rejected spoof per poll, whatever its reason


def test_silent_server_times_out_and_backs_off(responders: ResponderThread) -> None:
    r = responders.add(mode="silent")
    src, accepted = make_source(r.port, interval=1.0, timeout=0.05)
    asyncio.run(poll(src, 3))
    assert src.errors["timeout"] == 3 and accepted == []
    assert src.next_delay() == 8.0  # 1 s doubled per consecutive timeout
    asyncio.run(poll(src, 5))
    assert src.next_delay() == 16.0  # capped at 16x the interval
    r.mode = "normal"
    asyncio.run(poll(src, 1))
    assert src.next_delay() == 1.0 and src.up


def test_kod_rate_doubles_the_interval(responders: ResponderThread) -> None:
    r = responders.add(mode="kod_rate")
    src, accepted = make_source(r.port, interval=1.0)
    asyncio.run(poll(src, 2))
    assert src.poll_interval == 4.0 and src.kod == {"RATE": 2}
    assert src.errors["kod_rate"] == 2 and accepted == []
    assert src.stopped_by_kod is None


@pytest.mark.parametrize("mode", ["kod_deny", "kod_rstr"])
def test_kod_deny_stops_polling(responders: ResponderThread, mode: str) -> None:
    r = responders.add(mode=mode)
    src, _ = make_source(r.port, interval=1.0)

    async def run() -> None:
        await asyncio.wait_for(src.run(), 2.0)  # returns: the source stops itself

    asyncio.run(run())
    assert r.requests == 1
    assert src.stopped_by_kod == mode[4:].upper()
    assert not src.up


def test_run_never_polls_faster_than_the_interval(responders: ResponderThread) -> None:
    r = responders.add(mode="normal")
    src, _ = make_source(r.port, interval=1.0)
    src.poll_interval = 0.1  # below the lab floor only to keep the test short
    sends: list[int] = []
    mark_send = src._mark_send

    def recording_mark() -> None:  # called right before each datagram leaves
        mark_send()
        sends.append(src.last_send_ns)

    src._mark_send = recording_mark  # type: ignore[method-assign]

    async def run() -> None:
        task = asyncio.create_task(src.run())
        await asyncio.sleep(0.75)
        r.mode = "silent"  # timeouts must not make it poll faster
        await asyncio.sleep(0.75)
        task.cancel()

    asyncio.run(run())
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert len(gaps) >= 5
    assert min(gaps) >= 0.1e9  # exact, on the client's own send times
    # Seen by the responder (Python, on a shared machine) the same holds but for
    # scheduling noise on its side.
    server_gaps = [b - a for a, b in zip(r.request_times_ns, r.request_times_ns[1:], strict=False)]
    assert min(server_gaps) >= 0.1e9 - 5e6


def test_interval_floor_is_enforced() -> None:
    with pytest.raises(ValueError):
        ntp.NtpSource("x", HostPort("127.0.0.1", 123), interval=8.0)
    with pytest.raises(ValueError):
        ntp.NtpSource("x", HostPort("127.0.0.1", 123), interval=0.5, lab=True)
    ntp.NtpSource("x", HostPort("127.0.0.1", 123), interval=1.0, lab=True)


def _source_ports(r: object) -> list[int]:
    """Record the client port of every request the responder gets."""
    ports: list[int] = []
    original = r._answer  # type: ignore[attr-defined]

    def spy(data: bytes, address: tuple, rx_ns: int) -> None:
        ports.append(address[1])
        original(data, address, rx_ns)

    r._answer = spy  # type: ignore[attr-defined]
    return ports


def test_a_source_port_serves_at_most_port_reuse_requests(responders: ResponderThread) -> None:
    r = responders.add()
    ports = _source_ports(r)
    src, accepted = make_source(r.port)
    n = 2 * ntp.PORT_REUSE + 3
    asyncio.run(poll(src, n))
    asyncio.run(src.close())
    assert len(accepted) == n and len(ports) == n
    runs = [len(list(group)) for _port, group in itertools.groupby(ports)]
    assert max(runs) <= ntp.PORT_REUSE
    assert len(runs) >= 3  # a new socket (and port) after each PORT_REUSE requests
    assert src._client.sock is None  # closed with the source


@pytest.mark.parametrize("mode", ["wrong_origin", "silent"])
def test_the_port_moves_after_a_rejected_reply_or_a_timeout(responders: ResponderThread,
                                                            mode: str) -> None:
    # A forged reply means someone knows the port; a time-out may leave a late reply on
    # the way to it.  Either way the next request goes out from a new socket.
    r = responders.add(clock=ResponderClock(offset=0.1), mode=mode,
                       also_genuine=mode == "wrong_origin")
    ports = _source_ports(r)
    src, _accepted = make_source(r.port, timeout=0.1)
    asyncio.run(poll(src, 8))
    assert len(ports) == 8
    assert len(set(ports)) >= 7  # the kernel may, rarely, hand out a port twice


def test_a_transmit_stamp_is_matched_to_its_own_datagram() -> None:
    # Three datagrams from one socket; the stamp asked for is the second's, not the newest.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    client = ntp.ClientSocket()
    sock = client.take(socket.AF_INET)
    assert client.tx_enabled
    windows = []
    for _ in range(3):
        before = time.clock_gettime_ns(time.CLOCK_REALTIME)
        sock.sendto(b"x", sink.getsockname())
        windows.append((before, time.clock_gettime_ns(time.CLOCK_REALTIME)))
        time.sleep(0.005)
    stamp = read_tx_stamp(sock, 1)
    after = read_tx_stamp(sock, 2)  # reading stopped at the second: the third's is left
    client.retire()
    sink.close()
    assert stamp is not None and windows[1][0] <= stamp <= windows[1][1]
    assert after is not None and windows[2][0] <= after <= windows[2][1]


def test_the_socket_stays_watched_between_requests(responders: ResponderThread) -> None:
    r = responders.add()
    src, accepted = make_source(r.port)

    async def run() -> None:
        requests = ntp_io.Requests.of(asyncio.get_running_loop())
        await poll(src, 2)
        assert src._client.sock is not None
        fd = src._client.sock.fileno()
        assert fd in requests._readers  # no request in flight, still in the epoll set
        # A datagram while no request is in flight: the socket leaves the set (else
        # it would be reported at every wake-up) and the next request reads it.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
            stray.sendto(b"\x24" + bytes(47), src._client.sock.getsockname())
            await asyncio.sleep(0.5)
        assert fd not in requests._readers
        await poll(src, 1)

    asyncio.run(run())
    asyncio.run(src.close())
    assert len(accepted) == 3
    assert src.errors["wrong_port"] == 1  # the stray, read and rejected by the third


def test_each_queue_is_read_only_when_it_holds_something(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers 50 ms late: the transmit stamp wakes the loop alone, the
    reply later.  Each read finds what epoll announced; none comes back empty (two
    wasted system calls a poll, a third of the polls at 1,000 sources, before)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def answer_late() -> None:
        data, address = server.recvfrom(64)
        time.sleep(0.05)
        now = pkt.unix_ns_to_ntp(time.clock_gettime_ns(time.CLOCK_REALTIME))
        nonce = pkt.NTP_PACKET.unpack_from(data)[10]
        server.sendto(pkt.NTP_PACKET.pack(0x24, 1, 4, -20, 0, 0, b"SIM\0", now, nonce,
                                          now, now), address)

    empty: list[str] = []

    def counted_receive(sock: socket.socket) -> object:
        try:
            return receive(sock)
        except BlockingIOError:
            empty.append("receive")
            raise

    def counted_stamp(sock: socket.socket, send_id: int | None = None) -> int | None:
        stamp = read_tx_stamp(sock, send_id)
        if stamp is None:
            empty.append("error queue")
        return stamp

    monkeypatch.setattr(ntp, "receive", counted_receive)
    monkeypatch.setattr(ntp, "read_tx_stamp", counted_stamp)
    responder = threading.Thread(target=answer_late)
    responder.start()
    try:
        m = asyncio.run(ntp.query(server.getsockname(), socket.AF_INET, 1.0))
    finally:
        responder.join()
        server.close()
    assert m.kernel_tx_stamp and m.kernel_rx_stamp
    assert m.delay >= 0.05
    assert empty == []


def test_unresolvable_host_is_an_error_not_a_crash() -> None:
    src = ntp.NtpSource("x", HostPort("no-such-host.invalid", 123), interval=1.0, lab=True)
    asyncio.run(src.poll_once())
    assert src.errors["resolve"] == 1 and not src.up


def test_kernel_timestamps_are_used(responders: ResponderThread) -> None:
    r = responders.add()

    async def one() -> ntp.Measurement:
        return await ntp.query(("127.0.0.1", r.port), socket.AF_INET, 1.0)

    m = asyncio.run(one())
    assert m.kernel_tx_stamp and m.kernel_rx_stamp


def test_probe_duration_runs_to_the_replys_arrival_not_to_when_it_was_read(
        responders: ResponderThread) -> None:
    """Another source's poll due in 40 ms: the reply is read at that wake-up (ntp_io),
    yet the poll's duration is its round trip on loopback, well under a millisecond."""
    r = responders.add()
    src, accepted = make_source(r.port)

    async def run() -> float:
        requests = ntp_io.Requests.of(asyncio.get_running_loop())
        other = asyncio.ensure_future(requests.sleep_until(time.monotonic_ns() + 40_000_000))
        await asyncio.sleep(0)
        started = time.monotonic()
        await src.poll_once()
        wall = time.monotonic() - started
        await other
        return wall

    assert ntp_io.HARVEST > 0.04
    wall = asyncio.run(run())
    assert len(accepted) == 1
    assert wall >= 0.035  # read at the other poll's wake-up
    assert 0 < src.probe_duration < 0.01
