"""Rate safety of the NTP source as a property.

Hypothesis drives ``NtpSource.run`` against a fake clock and a fake server:
the seam is the module-level ``start_request`` / ``resolve`` / ``Requests`` and
``time`` of ``timemon.probes.ntp`` (the real scheduling code runs unchanged).
The fake ``Requests`` is a discrete-event scheduler: it calls each wake-up at
exactly its due time on the fake clock, as the real one calls it at that time
or up to ``GATHER_NS`` later (tests/test_ntp_io.py), never sooner.
Whatever mix of replies, timeouts, errors, resolver failures and KoD RATE the
server produces, and however slowly it answers:

* no two requests reach the server closer than the configured interval, nor
  closer than the interval in force after every RATE received so far (an
  independent model: each RATE doubles it, capped at MAXPOLL);
* after a RATE the source's interval has at least doubled;
* after DENY or RSTR no request is sent at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import types
from collections.abc import Callable
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from timemon.probes import ntp
from timemon.probes import ntp_packet as pkt
from timemon.probes.ntp_io import Wake

from timemon.address import HostPort

NS = 1_000_000_000

OUTCOMES = ("ok", "timeout", "network", "bad_reply", "resolve", "kod_rate", "kod_other",
            "kod_deny")


class FakeClock:
    """Monotonic ns; only the fakes advance it."""

    def __init__(self) -> None:
        self.now = 10 * NS

    def time_module(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            monotonic_ns=lambda: self.now, monotonic=lambda: self.now / NS,
            clock_gettime_ns=lambda _clk: 1_800_000_000 * NS + self.now,
            CLOCK_REALTIME=0)


def measurement(clock: FakeClock, rtt_ns: int) -> ntp.Measurement:
    t1 = 1_800_000_000 * NS + clock.now - rtt_ns
    reply = pkt.ServerReply(leap=0, version=4, stratum=1, poll=0, precision=-20,
                            root_delay=0.0, root_dispersion=0.0, refid=b"SIM\0",
                            reference_ns=t1, receive_ns=t1 + rtt_ns // 2,
                            transmit_ns=t1 + rtt_ns // 2)
    return ntp.Measurement(reply, pkt.Exchange(t1, t1 + rtt_ns // 2, t1 + rtt_ns // 2,
                                               t1 + rtt_ns), True, True)


class FakeScheduler:
    """``Requests`` on the fake clock: wake-ups run in time order, the clock jumps to each."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._events: list[tuple[int, int, Wake]] = []
        self._order = itertools.count()

    def call_at_ns(self, deadline_ns: int, callback: Callable[[], None]) -> Wake:
        wake = Wake(callback)
        heapq.heappush(self._events, (deadline_ns, next(self._order), wake))
        return wake

    async def drive(self, task: asyncio.Task[None], exhausted: Callable[[], bool]) -> None:
        """Run the wake-ups until ``task`` ends or the script is ``exhausted``."""
        idle = 0
        while not task.done():
            if exhausted():
                task.cancel()
                return
            await asyncio.sleep(0)  # run() and a name being resolved go on
            if not self._events:
                idle += 1
                assert idle < 100, "the source neither polls nor ends"
                continue
            idle = 0
            due, _order, wake = heapq.heappop(self._events)
            self.clock.now = max(self.clock.now, due)
            if not wake.cancelled:
                wake.callback()


class FakeRequest:
    def __init__(self) -> None:
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True


class FakeServer:
    """Plays a script of (outcome, setup delay, answer delay) per request."""

    def __init__(self, clock: FakeClock, script: list[tuple[str, float, float]]) -> None:
        self.clock = clock
        self.scheduler = FakeScheduler(clock)
        self.script = list(script)
        self.received: list[int] = []  # monotonic ns of each request at the server
        self.rates_before: list[int] = []  # RATE replies seen before each request
        self.rates = 0
        self.denied = False
        self.sent_after_deny = 0
        self.exhausted = False  # a request came after the script's last step

    def _next(self) -> tuple[str, float, float]:
        return self.script.pop(0)

    async def resolve(self, _address: HostPort) -> tuple[int, tuple]:
        outcome, setup, _answer = self.script[0] if self.script else ("ok", 0.0, 0.0)
        if outcome == "resolve":
            self._next()
            self.clock.now += int(setup * NS)
            raise ntp.NtpProbeError("resolve", "fake resolver failure")
        return 2, ("192.0.2.1", 123)

    def start_request(self, _sockaddr: tuple, _family: int, timeout: float,
                      on_done: Callable[[ntp.Measurement | Exception], None],
                      _on_reject: object, _interleave: object,
                      on_send: Callable[[], None] | None, _client: object,
                      _requests: object) -> FakeRequest:
        if not self.script:
            self.exhausted = True
            return FakeRequest()
        outcome, setup, answer = self._next()
        self.clock.now += int(setup * NS)  # socket set-up before the datagram leaves
        if on_send is not None:
            on_send()
        if self.denied:
            self.sent_after_deny += 1
        self.received.append(self.clock.now)
        self.rates_before.append(self.rates)
        request = FakeRequest()
        if outcome == "timeout":
            self._answer_at(timeout, request, on_done,
                            ntp.NtpProbeError("timeout", "fake timeout"))
            return request
        rtt = min(answer, timeout)
        result: ntp.Measurement | Exception
        if outcome == "network":
            result = ntp.NtpProbeError("network", "fake ECONNREFUSED")
        elif outcome == "bad_reply":
            result = ntp.NtpProbeError("bad_timestamps", "fake bad reply")
        elif outcome == "kod_rate":
            self.rates += 1
            result = pkt.KissOfDeath("RATE")
        elif outcome == "kod_other":
            result = pkt.KissOfDeath("XXXX")
        elif outcome == "kod_deny":
            self.denied = True
            result = pkt.KissOfDeath("DENY")
        else:
            result = None  # type: ignore[assignment]  # the measurement, made on arrival
        self._answer_at(rtt, request, on_done, result)
        return request

    def _answer_at(self, after: float, request: FakeRequest,
                   on_done: Callable[[ntp.Measurement | Exception], None],
                   result: ntp.Measurement | Exception | None) -> None:
        def arrive() -> None:
            assert not request.abandoned
            on_done(result if result is not None else measurement(self.clock, int(after * NS)))

        self.scheduler.call_at_ns(self.clock.now + int(after * NS), arrive)


def run_script(interval: float, script: list[tuple[str, float, float]]
               ) -> tuple[ntp.NtpSource, FakeServer]:
    clock = FakeClock()
    server = FakeServer(clock, script)
    src = ntp.NtpSource("s", HostPort("192.0.2.1", 123), interval=interval, lab=True,
                        timeout=2.0, sink=lambda _s, _x: None)

    async def main() -> None:
        task = asyncio.ensure_future(src.run())
        await server.scheduler.drive(task, lambda: server.exhausted)
        # DENY ends run(), the script's end cancels it; a bug in a callback raises here.
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with mock.patch.object(ntp, "start_request", server.start_request), \
            mock.patch.object(ntp, "resolve", server.resolve), \
            mock.patch.object(ntp, "Requests", types.SimpleNamespace(
                of=lambda _loop: server.scheduler)), \
            mock.patch.object(ntp, "time", clock.time_module()):
        asyncio.run(main())
    return src, server


step = st.tuples(
    st.sampled_from(OUTCOMES).filter(lambda o: o != "kod_deny") | st.just("kod_deny"),
    st.floats(0.0, 0.05),  # set-up delay before the send
    st.floats(0.0, 3.0),  # answer delay (clipped at the timeout)
)


@settings(max_examples=300, deadline=None)
@given(interval=st.sampled_from([1.0, 2.0, 16.0, 64.0]),
       script=st.lists(step, min_size=1, max_size=60))
def test_no_two_requests_closer_than_the_interval(interval: float,
                                                  script: list[tuple[str, float, float]]) -> None:
    src, server = run_script(interval, script)
    # Independent model of the interval in force: doubled by each RATE, capped at MAXPOLL.
    for i in range(1, len(server.received)):
        gap = (server.received[i] - server.received[i - 1]) / NS
        in_force = min(interval * 2.0 ** server.rates_before[i], ntp.MAX_INTERVAL)
        assert gap >= interval - 1e-9
        assert gap >= in_force - 1e-9, (i, gap, in_force)
    assert server.sent_after_deny == 0
    expected = min(interval * 2.0 ** server.rates, ntp.MAX_INTERVAL)
    assert src.poll_interval >= expected - 1e-9
    assert src.next_delay() >= src.poll_interval


@settings(max_examples=100, deadline=None)
@given(interval=st.sampled_from([1.0, 8.0]), before=st.lists(step, max_size=10),
       rates=st.integers(1, 4))
def test_rate_at_least_doubles_the_interval(interval: float,
                                            before: list[tuple[str, float, float]],
                                            rates: int) -> None:
    script = [s for s in before if s[0] != "kod_deny"]
    prior = sum(1 for s in script if s[0] == "kod_rate")
    script += [("kod_rate", 0.0, 0.01)] * rates + [("ok", 0.0, 0.01)] * 3
    src, server = run_script(interval, script)
    assert src.poll_interval >= min(interval * 2 ** (prior + rates), ntp.MAX_INTERVAL)
    # The requests after the last RATE (successful ones: no timeout back-off) are
    # spaced by the doubled interval.
    gaps = [(b - a) / NS for a, b in zip(server.received[-4:], server.received[-3:],
                                         strict=False)]
    assert all(g >= interval * 2 ** (prior + rates) - 1e-9 for g in gaps), gaps
