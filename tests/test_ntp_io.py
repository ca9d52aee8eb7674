"""The shared readiness/time-out machinery of NTP requests (``probes/ntp_io.py``)."""

from __future__ import annotations

import asyncio
import socket

from timemon.probes.ntp_io import SLACK, Requests


def test_each_deadline_fires_on_time_whatever_the_order_they_came_in() -> None:
    async def run() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        requests = Requests.of(loop)
        start = loop.time()
        fired: dict[str, float] = {}
        # A long one first: the timer is armed for it, and must be re-armed for the short one.
        for name, timeout in (("long", 0.3), ("short", 0.05), ("middle", 0.15)):
            requests.expire(timeout, lambda name=name: fired.setdefault(name, loop.time() - start))
        await asyncio.sleep(0.45)
        return fired

    fired = asyncio.run(run())
    assert list(fired) == ["short", "middle", "long"]
    for name, timeout in (("short", 0.05), ("middle", 0.15), ("long", 0.3)):
        assert fired[name] >= timeout
        assert fired[name] < timeout + SLACK + 0.1  # the slack, plus a shared machine's delay


def test_a_readable_socket_calls_its_reader_and_an_unwatched_one_does_not() -> None:
    async def run() -> tuple[int, int]:
        requests = Requests.of(asyncio.get_running_loop())
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        calls = {"b": 0, "d": 0}

        def drain(sock: socket.socket, key: str) -> None:
            calls[key] += 1
            sock.recv(16)

        requests.watch(b.fileno(), lambda: drain(b, "b"))
        requests.watch(d.fileno(), lambda: drain(d, "d"))
        requests.unwatch(d.fileno())
        requests.unwatch(d.fileno())  # twice is harmless
        a.send(b"x")
        c.send(b"y")
        await asyncio.sleep(0.05)
        requests.unwatch(b.fileno())
        for s in (a, b, c, d):
            s.close()
        return calls["b"], calls["d"]

    assert asyncio.run(run()) == (1, 0)


def test_each_event_loop_has_its_own() -> None:
    async def get() -> Requests:
        loop = asyncio.get_running_loop()
        assert Requests.of(loop) is Requests.of(loop)
        return Requests.of(loop)

    assert asyncio.run(get()) is not asyncio.run(get())
