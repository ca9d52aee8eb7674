"""Asynchronous NTP client and the NTP source the agent schedules.

Precision comes from the kernel: the transmit time T1 is the socket's software
transmit stamp (error queue) and the receive time T4 its receive stamp, so the
event loop's scheduling delay never enters the offset.  Each request carries a
random 64-bit nonce in the transmit field; a reply counts only if it echoes that
nonce and comes from the address and port asked (RFC 5905 sections 8 and 15).

A source sends from one socket, bound to a kernel-chosen random ephemeral port
(RFC 9109), for at most ``PORT_REUSE`` requests, and opens a new one (a new random
port) sooner after a time-out, an error or any rejected reply.  Keeping the port a
while keeps an ECMP network's path, hence the delay, steady between requests
(RFC 9109 discusses this effect of port changes on path selection), and opening
and closing a socket for every request cost about a fifth of each poll's CPU.
"""

from __future__ import annotations

import asyncio
import logging
import random
import select
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from timemon.probes import ntp_packet as pkt
from timemon.probes.ntp_filter import ClockFilter, FilterEntry, FilterPick
from timemon.probes.ntp_io import Requests, Wake
from timemon.probes.timestamping import enable_timestamps, read_tx_stamp, receive

from timemon.address import HostPort
from timemon.families import SOURCE_LABELS, Column, Families
from timemon.kinds import NTP_DEFAULT_INTERVAL, NTP_MIN_INTERVAL, NTP_MIN_INTERVAL_LAB
from timemon.source import ProbeError, Sample, SampleSink, Source

log = logging.getLogger("timemon.probes.ntp")

DEFAULT_INTERVAL = NTP_DEFAULT_INTERVAL
MIN_INTERVAL = NTP_MIN_INTERVAL  # RFC 4330 / 5905 MINPOLL for servers we do not operate
MIN_INTERVAL_LAB = NTP_MIN_INTERVAL_LAB  # a reference you operate (config ``lab = true``)
MIN_INTERVAL_LAB_CLI = 0.01  # one-shot ``timemon probe ntp --lab``
MAX_INTERVAL = float(1 << 17)  # RFC 5905 MAXPOLL 17: 36.4 hours
DEFAULT_TIMEOUT = 2.0
MAX_TIMEOUT_BACKOFF = 16  # a silent server is retried at most 16x less often...
MAX_BACKOFF_SECONDS = 1024.0  # ...and not less often than every 1024 s (unless interval is longer)
PORT_REUSE = 16  # requests sent from one client socket (one source port) at most
PRECISION_LOCAL = 1e-9  # our stamps are in ns; the filter's rho for the local side
MAX_START_SPREAD = 2.0  # seconds: the first poll waits a random part of the interval, up to this
RESOLVE_EVERY_NS = 300 * 1_000_000_000  # a host name is resolved again after 5 minutes
_EPOLLIN, _EPOLLERR = select.EPOLLIN, select.EPOLLERR


class NtpProbeError(ProbeError):
    """A failed NTP query; ``reason`` is the ``timemon_probe_errors_total`` label."""


@dataclass(slots=True)
class Interleave:
    """The previous exchange with a server, which the next request may ask to interleave.

    ``sampled`` says whether that exchange already gave a (basic-mode) sample.
    Not frozen: see ``ntp_packet.ServerReply``.
    """

    t1_ns: int
    t2_ns: int
    t4_ns: int
    server_receive_wire: int
    sampled: bool


@dataclass(slots=True)
class Measurement:
    """One accepted exchange with an NTP server.

    In interleaved mode the exchange measured is the *previous* one, completed
    with the server's kernel transmit stamp of its previous reply; ``duplicate``
    is set when that exchange was already reported in basic mode (once, when
    a server switches to interleaved), so a series never holds it twice.
    Not frozen: see ``ntp_packet.ServerReply``.
    """

    reply: pkt.ServerReply
    exchange: pkt.Exchange
    kernel_tx_stamp: bool
    kernel_rx_stamp: bool
    interleaved: bool = False
    duplicate: bool = False
    next_interleave: Interleave | None = None

    @property
    def offset(self) -> float:
        return self.exchange.offset_ns / 1e9

    @property
    def delay(self) -> float:
        return self.exchange.delay_ns / 1e9


RejectCallback = Any  # Callable[[str, str], None]


def sleep_until_monotonic(deadline_ns: int) -> Awaitable[None]:
    """Wait for a poll's due time (``time.monotonic_ns``): never less, and up to
    ``ntp_io.GATHER_NS`` more, so that polls due together leave in one wake-up."""
    return Requests.of(asyncio.get_running_loop()).sleep_until(deadline_ns)


def _same_endpoint(got: tuple, want: tuple) -> tuple[bool, bool]:
    """(same host, same port) for IPv4 (host, port) or IPv6 (host, port, flow, scope)."""
    return got[0] == want[0], got[1] == want[1]


class ClientSocket:
    """A source's client socket, replaced after ``PORT_REUSE`` requests or on ``retire``.

    ``sent`` counts the datagrams sent from the current socket: the number the
    kernel gives the next one's transmit stamp (``SOF_TIMESTAMPING_OPT_ID``).

    The socket stays in the loop's epoll set (``ntp_io.Requests``) from one request
    to the next, not only while one is in flight: adding and removing it for each
    request were two system calls a poll.  Should a datagram come while no request
    is in flight, the socket leaves the set, and the next request reads that
    datagram (and rejects it, as before).
    """

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.family = 0
        self.tx_enabled = False
        self.sent = 0
        self._on_readable: Callable[[int], None] | None = None  # the request in flight's
        self._watched_by: Requests | None = None

    def watch(self, requests: Requests, on_readable: Callable[[int], None]) -> None:
        """Call ``on_readable`` when the socket has something to read, until ``idle``."""
        assert self.sock is not None
        self._on_readable = on_readable
        if self._watched_by is not requests:
            self._unwatch()  # (a socket kept from another event loop: tests do that)
            requests.watch(self.sock.fileno(), self._readable)
            self._watched_by = requests

    def idle(self) -> None:
        """No request in flight any more."""
        self._on_readable = None

    def _readable(self, events: int) -> None:
        on_readable = self._on_readable
        if on_readable is not None:
            on_readable(events)
        else:  # left for the next request; level-triggered epoll would report it again
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watched_by is not None and self.sock is not None:
            self._watched_by.unwatch(self.sock.fileno())
        self._watched_by = None

    def take(self, family: int) -> socket.socket:
        """The socket for the next request: the current one, or a new one when due."""
        sock = self.sock
        if sock is None or self.sent >= PORT_REUSE or family != self.family:
            self.retire()
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                self.tx_enabled = enable_timestamps(sock)
                sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            except OSError:
                sock.close()
                raise
            self.sock, self.family, self.sent = sock, family, 0
        return sock

    def retire(self) -> None:
        """Close the socket: the next request gets a new one, with a new port."""
        self._on_readable = None
        self._unwatch()  # before closing: the descriptor's number will be reused
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Request:
    """One request in flight: its nonce, the checks of its reply, its time-out.

    What it ends with goes to ``on_done``, once: a ``Measurement``, or the
    ``NtpProbeError`` or ``pkt.KissOfDeath`` that ended it.  The NTP source polls
    with callbacks alone (``NtpSource.run``); ``query`` awaits the same request.
    A task per source cost two futures, two task steps and a coroutine chain a
    poll: at 1,000 sources polled every second, the event loop's thread used 22.0 %
    of a core with them and 20.3 % without (bench/scale.py, three pairs, no scrapes).

    ``done`` and ``set_exception`` let ``ntp_io.Requests.expire`` time it out as
    it would a future.
    """

    __slots__ = ("sockaddr", "client", "sock", "own", "tx_enabled", "send_id", "nonce",
                 "cookie", "interleave", "on_reject", "on_done", "tx_stamp", "rejected",
                 "fallback_t1", "finished")

    def __init__(self, sockaddr: tuple, interleave: Interleave | None,
                 on_reject: RejectCallback | None,
                 on_done: Callable[[Measurement | Exception], None],
                 client: ClientSocket | None) -> None:
        self.sockaddr = sockaddr
        self.own = client is None  # a socket opened for this request alone
        self.client = ClientSocket() if client is None else client
        self.sock: socket.socket | None = None
        self.tx_enabled = False
        self.send_id = 0
        self.nonce = pkt.new_nonce()
        self.cookie = pkt.new_nonce() if interleave else None
        self.interleave = interleave
        self.on_reject = on_reject
        self.on_done = on_done
        self.tx_stamp: int | None = None
        self.rejected = False
        self.fallback_t1 = 0
        self.finished = False

    def send(self, family: int, requests: Requests, timeout: float,
             on_send: Callable[[], None] | None) -> None:
        """Send the request; raises ``NtpProbeError`` (and keeps no socket) if it cannot."""
        client = self.client
        try:
            sock = self.sock = client.take(family)
        except OSError as exc:
            raise NtpProbeError("network", f"cannot open a socket: {exc}") from exc
        self.tx_enabled, self.send_id = client.tx_enabled, client.sent
        client.watch(requests, self._readable)
        interleave, cookie = self.interleave, self.cookie
        self.fallback_t1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        try:
            datagram = pkt.build_request(
                self.nonce, interleave=(interleave.server_receive_wire, cookie)
                if interleave and cookie else None)
            if on_send is not None:
                on_send()
            client.sent += 1
            sock.sendto(datagram, self.sockaddr)
        except OSError as exc:
            self.abandon()
            raise NtpProbeError("network", f"send failed: {exc}") from exc
        requests.expire(timeout, self, lambda: NtpProbeError(
            "timeout", f"no valid reply within {timeout:g} s"))

    # -- what ntp_io.Requests calls ------------------------------------------------

    def done(self) -> bool:
        return self.finished

    def set_exception(self, exception: BaseException) -> None:
        """The time-out (or a reply's error): the request ends with ``exception``."""
        if not self.finished:
            self._end(exception)  # type: ignore[arg-type]

    def _readable(self, events: int) -> None:
        """``events``: epoll's.  Each queue is read only when epoll says it holds
        something: a read that finds nothing is a system call and an exception.  In
        about a third of the polls the stamp is read in one wake-up and the reply in
        a later one, and each of the two wake-ups also read the other, empty queue
        (in-process, 500 sources polled every second: 2.6 reads a poll, now 2)."""
        sock = self.sock
        assert sock is not None
        # The error queue (transmit stamp) reports EPOLLERR, level-triggered: drain it
        # here or the loop would wake again and again until the reply arrives.
        if self.tx_enabled and events & _EPOLLERR:
            # (a late stamp of an earlier request is drained, not used)
            stamp = read_tx_stamp(sock, self.send_id)
            if stamp is not None:
                self.tx_stamp = stamp
                if not events & _EPOLLIN:
                    return  # no reply yet.  (A socket error would show at the next call.)
        sockaddr, on_reject = self.sockaddr, self.on_reject
        while not self.finished:
            try:
                got = receive(sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._end(NtpProbeError("network", str(exc)))
                return
            same_host, same_port = _same_endpoint(got.address, sockaddr)
            if not same_host or not same_port:
                self.rejected = True
                if on_reject:
                    on_reject("wrong_port" if same_host else "wrong_address",
                              f"reply from {got.address[0]}:{got.address[1]}")
                continue
            try:
                reply = pkt.parse_reply(got.data, self.nonce, got.rx_ns, self.cookie)
            except pkt.KissOfDeath as kod:
                self._end(kod)
                return
            except pkt.NtpReplyError as exc:
                self.rejected = True
                if on_reject:
                    on_reject(exc.reason, str(exc))
                continue
            self._end(self._measure(reply, got.rx_ns, got.kernel_stamp))

    # -- the end -------------------------------------------------------------------

    def _measure(self, reply: pkt.ServerReply, t4: int,
                 rx_kernel: bool) -> Measurement | NtpProbeError:
        if self.tx_enabled and self.tx_stamp is None:
            assert self.sock is not None
            self.tx_stamp = read_tx_stamp(self.sock, self.send_id)
        stamped = self.tx_stamp is not None
        t1 = self.tx_stamp if self.tx_stamp is not None else self.fallback_t1
        following = Interleave(t1, reply.receive_ns, t4, reply.receive_wire,
                               not reply.interleaved)
        interleave = self.interleave
        if reply.interleaved and interleave is not None:
            exchange = pkt.Exchange(interleave.t1_ns, interleave.t2_ns, reply.transmit_ns,
                                    interleave.t4_ns)
            if exchange.delay_ns < 0 or reply.transmit_ns < interleave.t2_ns:
                return NtpProbeError("bad_timestamps", "inconsistent interleaved reply")
            return Measurement(reply, exchange, stamped, rx_kernel, True, interleave.sampled,
                               following)
        exchange = pkt.Exchange(t1, reply.receive_ns, reply.transmit_ns, t4)
        return Measurement(reply, exchange, stamped, rx_kernel, False, False, following)

    def _end(self, outcome: Measurement | Exception) -> None:
        self.finished = True
        self.client.idle()
        # Anyone who got a forged reply to this port knows it: the next request moves.
        if self.own or self.rejected or outcome.__class__ is not Measurement:
            self.client.retire()
        self.on_done(outcome)

    def abandon(self) -> None:
        """Give up the request (its poll was cancelled): nothing more is read or called."""
        if not self.finished:
            self.finished = True
            self.client.idle()
            self.client.retire()


def start_request(sockaddr: tuple, family: int, timeout: float,
                  on_done: Callable[[Measurement | Exception], None],
                  on_reject: RejectCallback | None, interleave: Interleave | None,
                  on_send: Callable[[], None] | None, client: ClientSocket,
                  requests: Requests | None) -> Request:
    """Send a request for the NTP source's callbacks (``query`` without the waiting);
    raises ``NtpProbeError`` if it cannot be sent.  tests/test_rate_safety.py puts a
    fake server here."""
    request = Request(sockaddr, interleave, on_reject, on_done, client)
    assert requests is not None
    request.send(family, requests, timeout, on_send)
    return request


async def query(
    sockaddr: tuple,
    family: int,
    timeout: float = DEFAULT_TIMEOUT,
    on_reject: RejectCallback | None = None,
    interleave: Interleave | None = None,
    on_send: Callable[[], None] | None = None,
    client: ClientSocket | None = None,
) -> Measurement:
    """Send one client request to ``sockaddr`` and wait for its checked reply.

    Replies that fail a check are passed to ``on_reject(reason, detail)`` and
    the wait goes on for the genuine one until ``timeout``.  A valid
    Kiss-o'-Death ends the query with ``pkt.KissOfDeath``.  With ``interleave``
    (the previous exchange's ``next_interleave``) the request asks for the
    interleaved mode, which servers without it ignore.  ``on_send`` is called
    right before the datagram leaves, so a scheduler can space sends exactly.
    ``client`` is the source's socket to send from; without it, a socket is
    opened for this request alone.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Measurement] = loop.create_future()

    def on_done(outcome: Measurement | Exception) -> None:
        if outcome.__class__ is Measurement:
            done.set_result(outcome)  # type: ignore[arg-type]
        else:
            done.set_exception(outcome)  # type: ignore[arg-type]

    request = Request(sockaddr, interleave, on_reject, on_done, client)
    request.send(family, Requests.of(loop), timeout, on_send)
    try:
        return await done
    finally:
        request.abandon()  # cancelled while waiting; else it has already finished


async def resolve(address: HostPort) -> tuple[int, tuple]:
    """(family, sockaddr) for an address; host names through the loop's resolver."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise NtpProbeError("resolve", f"cannot resolve {address.host}: {exc}") from exc
    if not infos:
        raise NtpProbeError("resolve", f"no address for {address.host}")
    family, _type, _proto, _canon, sockaddr = infos[0]
    return family, sockaddr


def filter_entry(m: Measurement) -> FilterEntry:
    # Sample dispersion: both precisions plus PHI over the round trip (RFC 5905 section 8).
    dispersion = (2.0 ** m.reply.precision + PRECISION_LOCAL
                  + 15e-6 * (m.exchange.t4_ns - m.exchange.t1_ns) / 1e9)
    return FilterEntry(sample_time_ns(m), m.offset, m.delay, dispersion)


def sample_time_ns(m: Measurement) -> int:
    """Local time of a measurement: the midpoint of T1 and T4."""
    return m.exchange.t1_ns + (m.exchange.t4_ns - m.exchange.t1_ns) // 2


def root_distance(pick: FilterPick, reply: pkt.ServerReply) -> float:
    """RFC 5905 lambda: (root delay + delay) / 2 + root dispersion + dispersion + jitter."""
    return (reply.root_delay + pick.delay) / 2 + reply.root_dispersion + pick.dispersion + pick.jitter


class NtpSource(Source):
    """One NTP server polled on its own schedule, with KoD and timeout handling."""

    kind = "ntp"

    def __init__(
        self,
        name: str,
        address: HostPort,
        interval: float = DEFAULT_INTERVAL,
        lab: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        sink: SampleSink | None = None,
        interleaved: bool = True,
    ) -> None:
        floor = MIN_INTERVAL_LAB if lab else MIN_INTERVAL
        if interval < floor:
            raise ValueError(f"interval {interval:g} s is below the floor of {floor:g} s")
        super().__init__(name, interval, sink)
        self.address = address
        self.lab = lab
        self.timeout = min(timeout, max(interval, 0.5))
        self.configured_interval = interval
        self.poll_interval = interval  # current, after KoD RATE
        self.consecutive_timeouts = 0
        self.stopped_by_kod: str | None = None
        self.kod: dict[str, int] = {}
        self.filter = ClockFilter()
        self.reply: pkt.ServerReply | None = None
        self._resolved: tuple[int, tuple] | None = None
        self._resolved_at_ns = 0
        self.last_send_ns = 0  # monotonic time of the last request sent
        self.use_interleaved = interleaved
        self.interleaved = False  # the server's last reply was interleaved
        self._interleave: Interleave | None = None
        self._client = ClientSocket()
        # The polls' callbacks (run): the loop's Requests, the next poll's wake-up, the
        # request in flight or the name being resolved, and what run() waits for.
        self._requests: Requests | None = None
        self._wake: Wake | None = None
        self._in_flight: Request | None = None
        self._resolving: asyncio.Task[None] | None = None
        self._ended: asyncio.Future[None]
        self._started = 0  # monotonic ns when the poll in progress began
        self._reference_info: tuple[tuple[bytes, int] | None, dict[str, str]] | None = None

    # -- schedule ------------------------------------------------------------

    def next_delay(self) -> float:
        """Seconds from this poll's send to the next one, never below the interval.

        Consecutive timeouts double it, up to 16x the interval or 1024 s, whichever
        is smaller (but never below the interval itself).
        """
        if not self.consecutive_timeouts:
            return self.poll_interval
        cap = max(self.poll_interval,
                  min(self.poll_interval * MAX_TIMEOUT_BACKOFF, MAX_BACKOFF_SECONDS))
        return min(self.poll_interval * 2.0 ** min(self.consecutive_timeouts, 30), cap)

    async def run(self) -> None:
        """Poll until the server says DENY or RSTR (or the task is cancelled).

        The polls themselves are callbacks (``_poll_due``, then the request's
        ``_on_done``): the task only waits here for the end.
        """
        if self.stopped_by_kod is None:
            loop = asyncio.get_running_loop()
            self._requests = Requests.of(loop)
            self._ended = loop.create_future()
            # Sources started together would otherwise poll in one burst every interval,
            # for ever (each is spaced from its own previous send): the load, and the
            # wait of a scrape that lands in the burst, come in spikes.
            spread = random.uniform(0.0, min(self.poll_interval, MAX_START_SPREAD))
            self._schedule(time.monotonic_ns() + int(spread * 1e9))
            try:
                await self._ended
            finally:
                self._halt()  # stopped, removed by a reload, or the agent ends
        # DENY or RSTR: the server asked us to stop.  Stay down until a reload.
        self.set_up(False)

    def _schedule(self, due_ns: int) -> None:
        assert self._requests is not None
        self._wake = self._requests.call_at_ns(due_ns, self._poll_due)

    def _poll_due(self) -> None:
        """A poll is due: send it, or resolve the server's name first (a task)."""
        self._wake = None
        started = self._started = time.monotonic_ns()
        self.last_send_ns = started  # until the request actually leaves
        resolved = self._resolved
        if resolved is None or self._resolution_stale(started):
            self._resolving = asyncio.get_running_loop().create_task(self._resolve_and_send())
            return
        self._send(resolved)

    async def _resolve_and_send(self) -> None:
        try:
            resolved = await self._sockaddr()
        except NtpProbeError as exc:
            self._on_done(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug: run() raises it
            self._fail(exc)
            return
        finally:
            self._resolving = None
        self._send(resolved)

    def _send(self, resolved: tuple[int, tuple]) -> None:
        family, sockaddr = resolved
        try:
            request = start_request(sockaddr, family, self.timeout, self._on_done,
                                    self.count_error, self._interleave, self._mark_send,
                                    self._client, self._requests)
        except NtpProbeError as exc:
            self._on_done(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: run() raises it
            self._fail(exc)
        else:
            self._in_flight = request

    def _on_done(self, outcome: Measurement | Exception) -> None:
        """The request's end (or a failure to send it): record it, plan the next poll."""
        self._in_flight = None
        try:
            self._conclude(outcome, self._started)
            if self.stopped_by_kod is not None:
                self._ended.set_result(None)
                return
            # Spaced from the moment the last request really left (or was about to,
            # when resolving failed): never two requests closer than the interval.
            self._schedule(self.last_send_ns + int(self.next_delay() * 1e9))
        except Exception as exc:  # noqa: BLE001 - a bug: run() raises it
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """A bug in a poll's callback: ``run`` raises it, as a task would have."""
        if not self._ended.done():
            self._ended.set_exception(exc)

    def _halt(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._in_flight is not None:
            self._in_flight.abandon()
            self._in_flight = None
        if self._resolving is not None:
            self._resolving.cancel()
            self._resolving = None
        self._client.retire()

    def _resolution_stale(self, now_ns: int) -> bool:
        """A host name (not a literal address) resolved more than 5 minutes ago."""
        return (not self.address.is_literal
                and now_ns - self._resolved_at_ns > RESOLVE_EVERY_NS)

    async def _sockaddr(self) -> tuple[int, tuple]:
        now = time.monotonic_ns()
        if self._resolved is None or self._resolution_stale(now):
            self._resolved = await resolve(self.address)
            self._resolved_at_ns = now
        return self._resolved

    async def close(self) -> None:
        self._client.retire()

    def _mark_send(self) -> None:
        self.last_send_ns = time.monotonic_ns()

    async def poll_once(self) -> Measurement | None:
        """One poll, awaited: what ``run`` does with callbacks (the tests call it)."""
        started = time.monotonic_ns()
        self.last_send_ns = started  # until the request actually leaves
        try:
            resolved = self._resolved
            family, sockaddr = (resolved if resolved is not None and self.address.is_literal
                                else await self._sockaddr())
            m = await query(sockaddr, family, self.timeout, on_reject=self.count_error,
                            interleave=self._interleave, on_send=self._mark_send,
                            client=self._client)
        except (pkt.KissOfDeath, NtpProbeError) as exc:
            return self._conclude(exc, started)
        return self._conclude(m, started)

    def _conclude(self, outcome: Measurement | Exception, started: int) -> Measurement | None:
        """What a poll's outcome does to the source; the measurement if it gave one."""
        self.probe_duration = (time.monotonic_ns() - started) / 1e9
        if outcome.__class__ is not Measurement:
            self._interleave = None
            if isinstance(outcome, pkt.KissOfDeath):
                self._on_kod(outcome)
                return None
            if not isinstance(outcome, NtpProbeError):
                raise outcome
            if outcome.reason in ("timeout", "resolve"):
                self.consecutive_timeouts += 1
                self._resolved = None if outcome.reason == "resolve" else self._resolved
            self.count_error(outcome.reason, str(outcome))
            self.set_up(False)
            return None
        m: Measurement = outcome  # type: ignore[assignment]
        this = m.next_interleave  # this request's own T1 and T4
        if this is not None and this.t4_ns > this.t1_ns:
            # Up to the reply's arrival (its kernel stamp), not to when the loop read it:
            # replies wait up to ntp_io.HARVEST for a wake-up the loop has anyway.
            self.probe_duration = (self.last_send_ns - started + this.t4_ns - this.t1_ns) / 1e9
        self.consecutive_timeouts = 0
        if self.use_interleaved:
            self._interleave = this
        self.interleaved = m.interleaved
        if not m.duplicate:
            self._on_measurement(m)
        return m

    def _on_kod(self, kod: pkt.KissOfDeath) -> None:
        self.kod[kod.code] = self.kod.get(kod.code, 0) + 1
        self.count_error(kod.reason, str(kod))
        if kod.code == "RATE":
            self.poll_interval = min(self.poll_interval * 2, MAX_INTERVAL)
            log.warning("source %s: KoD RATE, poll interval now %g s", self.name,
                        self.poll_interval)
        elif kod.code in ("DENY", "RSTR"):
            self.stopped_by_kod = kod.code
            log.error("source %s: KoD %s from %s, polling stopped until the config is "
                      "reloaded", self.name, kod.code, self.address)
        self.set_up(False)

    def _on_measurement(self, m: Measurement) -> None:
        self.reply = m.reply
        self.accept(Sample(sample_time_ns(m), m.offset, m.delay))
        pick = self.filter.add(filter_entry(m))
        self.offset, self.delay, self.jitter = pick.offset, pick.delay, pick.jitter
        self.root_distance = root_distance(pick, m.reply)
        self.error_bound = abs(pick.offset) + m.reply.root_dispersion + m.reply.root_delay / 2
        self.set_up(True)

    # -- exporter --------------------------------------------------------------

    def collect_specific(self, out: Families) -> None:
        lv = self.label_values
        out.declare_counter("timemon_ntp_kod", "Kiss-o'-Death replies by kiss code.",
                            (*SOURCE_LABELS, "code"))
        for code, count in sorted(dict(self.kod).items()):
            out.counter("timemon_ntp_kod", "", (*SOURCE_LABELS, "code"), (*lv, code), count)
        reply = self.reply
        if reply is not None:
            out.info("timemon_ntp_server", "Identity of the server's reference.",
                     SOURCE_LABELS, lv, {"refid": reply.refid_text,
                                         "version": str(reply.version),
                                         "address": str(self.address)})

    def own_key(self) -> tuple[int, bytes | None, int, int]:
        """``collect_specific`` shows the KoD counts (each also counts an error) and
        the server's identity: the refid, whose text depends on the stratum, and the
        NTP version."""
        reply = self.reply
        if reply is None:
            return (self.errors_changed, None, 0, 0)
        return (self.errors_changed, reply.refid, reply.stratum, reply.version)

    def reference_info(self) -> dict[str, str]:
        """The same dict while the server's refid and stratum hold (it is asked for at
        every sample: Agent.record)."""
        reply = self.reply
        key = None if reply is None else (reply.refid, reply.stratum)
        known = self._reference_info
        if known is None or known[0] != key:
            info = {"server": str(self.address)}
            if reply is not None:
                info.update(refid=reply.refid_text, stratum=str(reply.stratum))
            known = self._reference_info = (key, info)
        return known[1]

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(measurement_fields(self.reply))
        status["poll_interval_seconds"] = self.next_delay()
        status["interleaved"] = self.interleaved
        return status


def _from_reply(field: str) -> Callable[[NtpSource], float | None]:
    get = attrgetter(field)
    return lambda source: None if source.reply is None else get(source.reply)


def _with_reply(value: Callable[[NtpSource], float | None]) -> Callable[[NtpSource], float | None]:
    return lambda source: None if source.reply is None else value(source)


NtpSource.COLUMNS = (
    Column("timemon_ntp_poll_interval_seconds",
           "Current poll interval (doubled by each KoD RATE, backed off on timeouts).",
           "gauge", NtpSource.next_delay),
    Column("timemon_ntp_polling_stopped",
           "1 when a KoD DENY or RSTR stopped polling this server until a reload.",
           "gauge", lambda source: 1.0 if source.stopped_by_kod else 0.0),
    Column("timemon_ntp_stratum", "Stratum of the server's last accepted reply.", "gauge",
           _from_reply("stratum")),
    Column("timemon_ntp_leap",
           "Leap indicator: 0 none, 1 insert second, 2 delete second, 3 unsynchronised.",
           "gauge", _from_reply("leap")),
    Column("timemon_ntp_root_delay_seconds", "Server's root delay.", "gauge",
           _from_reply("root_delay")),
    Column("timemon_ntp_root_dispersion_seconds", "Server's root dispersion.", "gauge",
           _from_reply("root_dispersion")),
    Column("timemon_ntp_root_distance_seconds",
           "RFC 5905 root distance (synchronization distance) of the filter's pick.", "gauge",
           _with_reply(attrgetter("root_distance"))),
    Column("timemon_ntp_interleaved",
           "1 when the server answered the last request in interleaved mode.", "gauge",
           _with_reply(lambda source: 1.0 if source.interleaved else 0.0)),
)


def measurement_fields(reply: pkt.ServerReply | None) -> dict[str, Any]:
    if reply is None:
        return {}
    return {
        "stratum": reply.stratum,
        "leap": reply.leap,
        "leap_text": reply.leap_text,
        "refid": reply.refid_text,
        "root_delay_seconds": reply.root_delay,
        "root_dispersion_seconds": reply.root_dispersion,
        "precision": reply.precision,
        "version": reply.version,
    }


async def probe_once(
    address: HostPort, count: int, interval: float, timeout: float = DEFAULT_TIMEOUT,
    interleaved: bool = True,
) -> list[dict[str, Any]]:
    """What ``timemon probe ntp`` prints: one record per measurement, errors included.

    A reply that only repeats an exchange already measured (the switch to
    interleaved mode) is not a record: one more request is made instead.
    """
    results: list[dict[str, Any]] = []
    rejects: list[tuple[str, str]] = []
    family, sockaddr = await resolve(address)
    state: Interleave | None = None
    while len(results) < count:
        sent_at = time.monotonic_ns()
        record: dict[str, Any] = {"source": str(address)}
        try:
            m = await query(sockaddr, family, timeout,
                            on_reject=lambda r, d: rejects.append((r, d)), interleave=state)
        except pkt.KissOfDeath as kod:
            state = None
            record.update(error=kod.reason, detail=str(kod))
            results.append(record)
            if kod.code in ("DENY", "RSTR"):
                break
            interval *= 2 if kod.code == "RATE" else 1
        except NtpProbeError as exc:
            state = None
            record.update(error=exc.reason, detail=str(exc))
            results.append(record)
        else:
            state = m.next_interleave if interleaved else None
            if not m.duplicate:
                record.update(
                    offset_seconds=m.offset,
                    delay_seconds=m.delay,
                    **measurement_fields(m.reply),
                    sample_timestamp_seconds=sample_time_ns(m) / 1e9,
                    interleaved=m.interleaved,
                    kernel_timestamps=m.kernel_tx_stamp and m.kernel_rx_stamp,
                )
                results.append(record)
        if len(results) < count:
            await sleep_until_monotonic(sent_at + int(interval * 1e9))
    for reason, detail in rejects:
        log.warning("rejected a reply: %s (%s)", reason, detail)
    return results
