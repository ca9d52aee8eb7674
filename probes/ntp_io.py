"""Readiness and time-outs of the NTP requests in flight, shared by every source.

At 1,000 requests a second, asyncio's own per-request machinery was a large part
of the agent's CPU: ``add_reader``/``remove_reader`` keep a Python-level selector
map in step with epoll, and a ``call_later`` timer per request (almost always
cancelled) is a heap push in Python and a cancelled handle to skip later.  Here
all request sockets sit in one private epoll set whose descriptor is the only
one the event loop watches, and all time-outs share one heap and one timer.

A time-out fires up to ``SLACK`` seconds late: the timer is re-armed for a batch
of deadlines, not for each.  Nothing measured depends on that moment (a reply's
receive time is its kernel stamp); it only ends the wait for a reply.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import select
from collections.abc import Callable

SLACK = 0.01  # seconds a time-out may fire late, so one timer serves many deadlines

_ATTRIBUTE = "_timemon_ntp_requests"


class Requests:
    """The sockets and deadlines of one event loop's NTP requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        # (deadline in loop.time(), tie-breaker, callback); entries of answered
        # requests stay until their deadline passes and are dropped then.
        self._deadlines: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        loop.add_reader(self._epoll.fileno(), self._ready)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Requests:
        """The loop's instance, made on first use; it lives and dies with the loop."""
        requests = getattr(loop, _ATTRIBUTE, None)
        if requests is None:
            requests = cls(loop)
            setattr(loop, _ATTRIBUTE, requests)
        return requests

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable`` whenever ``fd`` has a datagram or an error-queue entry."""
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; call before closing it."""
        if self._readers.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def expire(self, timeout: float, on_timeout: Callable[[], None]) -> None:
        """Call ``on_timeout`` ``timeout`` seconds from now (up to ``SLACK`` later).

        The callback runs even if the request was answered meanwhile: it must
        check for itself (a done future) and do nothing then.
        """
        when = self._loop.time() + timeout
        heapq.heappush(self._deadlines, (when, next(self._order), on_timeout))
        if when + SLACK < self._timer_at:
            self._arm(when + SLACK)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        deadlines = self._deadlines
        now = self._loop.time()
        while deadlines and deadlines[0][0] <= now:
            heapq.heappop(deadlines)[2]()
        if deadlines:
            self._arm(deadlines[0][0] + SLACK)

    def _ready(self) -> None:
        readers = self._readers
        for fd, _events in self._epoll.poll(0):
            on_readable = readers.get(fd)
            if on_readable is not None:
                on_readable()
