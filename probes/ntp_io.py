"""The wake-ups of the NTP poller: sends, replies and time-outs, shared by every source.

At 1,000 requests a second the agent's CPU went less to the work of a poll than to
waking up for it.  Every send and every reply was its own wake-up of the event
loop (2.2 a poll), and on the reference VM a wake-up costs about 90 µs of CPU (an
asyncio loop sleeping 1 ms at a time: 77 µs user, 13 µs system per wake-up), as
much as the Python of a poll.  This module holds one event loop's three kinds of
wake-up and lets one serve many:

* **Sends.**  A source asks for its next poll with ``call_at_ns`` (a callback:
  the NTP source) or waits for it with ``sleep_until`` (a future: ``timemon probe``).
  One timer serves all sources.  It is set for the *last* due time within ``GATHER_NS`` of the
  first, so polls due within a few milliseconds of each other leave in one wake-up.
  A poll is never sent before its due time (no server gets two requests closer
  than its interval), at most ``GATHER_NS`` after it.  Sources sent together are due
  together at their next poll, so a batch, once formed, mostly waits only for its
  own sends (each source is spaced from its own previous send).
* **Replies.**  All request sockets sit in one private epoll set.  While another
  wake-up is due within ``HARVEST``, the loop does not watch that set; replies are
  read at that wake-up.  That costs no precision: a reply's receive time is its
  kernel stamp, taken when it arrived, not when it is read.  With nothing due that
  soon, the loop watches the set and a reply wakes it at once.
* **Time-outs** share one heap and fire up to ``SLACK`` late (they only end a wait).
  Answered requests leave the heap when they reach its top, so it never wakes the
  loop for them.

Before, each request also called asyncio's ``add_reader``/``remove_reader`` (a
Python-level selector map) and set a ``call_later`` timer, almost always cancelled.

Callbacks run inside this module's one timer callback (``_fire``), in the order
above; while it runs, nothing re-arms the timer: ``_fire`` does that once at its end.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
import select
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("timemon.probes.ntp_io")

SLACK = 0.01  # seconds a time-out may fire late, so one timer serves many deadlines
GATHER_NS = 10_000_000  # polls due within 10 ms of the first due one wait for the last
HARVEST = 0.05  # seconds: with a wake-up due sooner than this, replies wait for it

_ATTRIBUTE = "_timemon_ntp_requests"


class Waiter(Protocol):
    """What ``expire`` fails: an ``asyncio.Future``, or a request of its own kind."""

    def done(self) -> bool: ...

    def set_exception(self, exception: BaseException) -> None: ...


class Wake:
    """A callback ``call_at_ns`` will make, unless cancelled first."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Requests:
    """The sends, sockets and deadlines of one event loop's NTP polls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[int], None]] = {}
        self._reading = False  # the loop watches the epoll set's descriptor
        # (deadline in loop.time(), tie-breaker, waiter, its error); answered requests
        # leave when they reach the top, so the top is the oldest one still waiting.
        self._deadlines: list[tuple[float, int, Waiter, Callable[[], BaseException]]] = []
        self._order = itertools.count()
        # Sources waiting to poll: due times (monotonic ns), sorted, and their futures
        # or callbacks.
        self._due_ns: list[int] = []
        self._waiting: list[asyncio.Future[None] | Wake] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._firing = False  # in _fire, which re-arms the timer once at its end

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Requests:
        """The loop's instance, made on first use; it lives and dies with the loop."""
        requests = getattr(loop, _ATTRIBUTE, None)
        if requests is None:
            requests = cls(loop)
            setattr(loop, _ATTRIBUTE, requests)
        return requests

    # -- sends -------------------------------------------------------------------

    def sleep_until(self, deadline_ns: int) -> asyncio.Future[None]:
        """A future done at ``deadline_ns`` (``time.monotonic_ns``) or up to ``GATHER_NS``
        after it, never before; already done if that time has passed.  A future, not a
        coroutine: the awaiting task resumes without one more frame to pass through."""
        waiter = self._loop.create_future()
        if deadline_ns <= time.monotonic_ns():
            waiter.set_result(None)
            return waiter
        self._add_due(deadline_ns, waiter)
        return waiter  # a cancelled waiter stays listed until its time, then is skipped

    def call_at_ns(self, deadline_ns: int, callback: Callable[[], None]) -> Wake:
        """Call ``callback`` at ``deadline_ns`` (``time.monotonic_ns``) or up to
        ``GATHER_NS`` after it, never before: ``sleep_until`` without a future and a
        task step.  A time already passed is called at the loop's next wake-up.  The
        callback runs inside this module's timer callback: it must not raise."""
        wake = Wake(callback)
        self._add_due(deadline_ns, wake)
        return wake  # a cancelled wake stays listed until its time, then is skipped

    def _add_due(self, deadline_ns: int, waiter: asyncio.Future[None] | Wake) -> None:
        at = bisect.bisect_right(self._due_ns, deadline_ns)
        self._due_ns.insert(at, deadline_ns)
        self._waiting.insert(at, waiter)
        if not self._firing and (at == 0 or deadline_ns <= self._due_ns[0] + GATHER_NS):
            self._plan()

    def _send_wakeup(self) -> float:
        """When the waiting sources want the loop: the last due time within
        ``GATHER_NS`` of the first (loop time), or infinity."""
        due = self._due_ns
        if not due:
            return float("inf")
        return due[bisect.bisect_right(due, due[0] + GATHER_NS) - 1] / 1e9

    def _release(self) -> None:
        due = self._due_ns
        if not due:
            return
        count = bisect.bisect_right(due, time.monotonic_ns())
        if count:
            released = self._waiting[:count]
            del due[:count], self._waiting[:count]
            for waiter in released:
                if waiter.__class__ is Wake:
                    if not waiter.cancelled:  # type: ignore[union-attr]
                        try:
                            waiter.callback()  # type: ignore[union-attr]
                        except Exception:  # a bug: the other sources' sends still go
                            log.exception("an NTP poll callback failed")
                elif not waiter.done():  # type: ignore[union-attr]
                    waiter.set_result(None)  # type: ignore[union-attr]

    # -- replies -----------------------------------------------------------------

    def watch(self, fd: int, on_readable: Callable[[int], None]) -> None:
        """Call ``on_readable(events)`` (epoll's: EPOLLIN, EPOLLERR...) when ``fd`` has
        a datagram or an error-queue entry: at once, or (with a wake-up due within
        ``HARVEST``) at that wake-up."""
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable
        if not self._reading and not self._firing:
            self._plan()

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; call before closing it."""
        if self._readers.pop(fd, None) is not None:
            self._epoll.unregister(fd)
            if not self._readers and self._reading:
                self._loop.remove_reader(self._epoll.fileno())
                self._reading = False

    def _harvest(self) -> None:
        readers = self._readers
        for fd, events in self._epoll.poll(0):
            on_readable = readers.get(fd)
            if on_readable is not None:
                on_readable(events)

    # -- time-outs ---------------------------------------------------------------

    def expire(self, timeout: float, waiter: Waiter,
               error: Callable[[], BaseException]) -> None:
        """Fail ``waiter`` with ``error()`` ``timeout`` seconds from now (up to ``SLACK``
        later) unless it is done by then."""
        when = self._loop.time() + timeout
        heapq.heappush(self._deadlines, (when, next(self._order), waiter, error))
        if when + SLACK < self._timer_at and not self._firing:
            self._plan()

    def _expire_due(self) -> None:
        deadlines = self._deadlines
        now = self._loop.time()
        while deadlines and deadlines[0][0] <= now:
            _when, _order, waiter, error = heapq.heappop(deadlines)
            if not waiter.done():
                waiter.set_exception(error())

    # -- the one timer -----------------------------------------------------------

    def _plan(self) -> None:
        """Arm the timer for the next wake-up, and watch the sockets only if a reply
        would otherwise wait longer than ``HARVEST`` for it."""
        at = self._send_wakeup()
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].done():
            heapq.heappop(deadlines)
        if deadlines:
            at = min(at, deadlines[0][0] + SLACK)
        if at != self._timer_at:  # sooner, or later when a gathered poll joined
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = None if at == float("inf") else self._loop.call_at(at, self._fire)
        reading = bool(self._readers) and self._timer_at > self._loop.time() + HARVEST
        if reading != self._reading:
            if reading:
                self._loop.add_reader(self._epoll.fileno(), self._harvest)
            else:
                self._loop.remove_reader(self._epoll.fileno())
            self._reading = reading

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._firing = True
        try:
            # Due sends first: the replies read here (and their tasks, for futures) would
            # otherwise delay every send of the batch, and so its next due time.
            self._release()
            self._harvest()  # before time-outs: a reply that came in time is not one
            self._expire_due()
        finally:
            self._firing = False
            self._plan()
