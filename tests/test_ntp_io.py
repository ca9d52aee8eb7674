"""The shared readiness/time-out machinery of NTP requests (``probes/ntp_io.py``)."""

from __future__ import annotations

import asyncio
import select
import socket
import time

from timemon.probes.ntp_io import GATHER_NS, HARVEST, SLACK, Requests


def test_each_deadline_fires_on_time_whatever_the_order_they_came_in() -> None:
    async def run() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        requests = Requests.of(loop)
        start = loop.time()
        fired: dict[str, float] = {}
        # A long one first: the timer is armed for it, and must be re-armed for the short one.
        waiters = {}
        for name, timeout in (("long", 0.3), ("short", 0.05), ("middle", 0.15)):
            waiter = waiters[name] = loop.create_future()
            waiter.add_done_callback(
                lambda _w, name=name: fired.setdefault(name, loop.time() - start))
            requests.expire(timeout, waiter, lambda: TimeoutError("late"))
        answered = loop.create_future()
        requests.expire(0.1, answered, lambda: TimeoutError("answered"))
        answered.set_result(None)  # an answered request is not failed at its deadline
        await asyncio.sleep(0.45)
        assert all(isinstance(w.exception(), TimeoutError) for w in waiters.values())
        assert answered.result() is None
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

        def drain(sock: socket.socket, key: str, events: int) -> None:
            assert events & select.EPOLLIN  # the reader is told what epoll saw
            calls[key] += 1
            sock.recv(16)

        requests.watch(b.fileno(), lambda events: drain(b, "b", events))
        requests.watch(d.fileno(), lambda events: drain(d, "d", events))
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


MS = 1_000_000  # ns


def test_polls_due_close_together_leave_in_one_wakeup_and_none_before_its_time() -> None:
    """Due times 2 and 6 ms apart (within GATHER_NS) wake together, at the last of them;
    one due 4 x GATHER_NS later has its own wake-up."""
    assert GATHER_NS >= 8 * MS

    async def run() -> tuple[list[int], dict[str, int]]:
        requests = Requests.of(asyncio.get_running_loop())
        base = time.monotonic_ns() + 30 * MS
        due = {"a": base, "b": base + 2 * MS, "c": base + 6 * MS, "late": base + 4 * GATHER_NS}
        woke: dict[str, int] = {}

        async def wait(name: str) -> None:
            await requests.sleep_until(due[name])
            woke[name] = time.monotonic_ns()

        await asyncio.gather(*(wait(name) for name in ("late", "c", "a", "b")))
        return [woke[n] - due[n] for n in due], {n: woke[n] - base for n in due}

    late_by, since_base = asyncio.run(run())
    assert min(late_by) >= 0  # never before its due time
    # a and b waited for c, and the three woke in the same wake-up.
    assert since_base["a"] >= 6 * MS and since_base["b"] >= 6 * MS
    assert max(since_base["a"], since_base["b"], since_base["c"]) - min(
        since_base["a"], since_base["b"], since_base["c"]) < 2 * MS
    assert since_base["late"] >= 4 * GATHER_NS  # not pulled forward into the batch


def test_a_past_due_time_does_not_wait() -> None:
    async def run() -> int:
        requests = Requests.of(asyncio.get_running_loop())
        start = time.monotonic_ns()
        await requests.sleep_until(start - 5 * MS)
        return time.monotonic_ns() - start

    assert asyncio.run(run()) < 5 * MS


def _read_time(near_wakeup_s: float | None) -> tuple[float, float | None]:
    """Seconds from a datagram's arrival to its reader's call, with a poll due in
    ``near_wakeup_s`` (or none); also when that poll woke."""

    async def run() -> tuple[float, float | None]:
        loop = asyncio.get_running_loop()
        requests = Requests.of(loop)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        read = loop.create_future()
        woke: list[float] = []

        async def poll() -> None:
            assert near_wakeup_s is not None
            await requests.sleep_until(time.monotonic_ns() + int(near_wakeup_s * 1e9))
            woke.append(loop.time())

        waiting = asyncio.ensure_future(poll()) if near_wakeup_s is not None else None
        await asyncio.sleep(0)  # the poll is listed before the request goes out
        start = loop.time()
        requests.watch(b.fileno(),
                       lambda _events: read.done() or (b.recv(8), read.set_result(loop.time())))
        a.send(b"x")
        read_at = await read
        requests.unwatch(b.fileno())
        if waiting is not None:
            await waiting
        a.close()
        b.close()
        return read_at - start, (woke[0] - start if woke else None)

    return asyncio.run(run())


def test_a_reply_waits_for_a_wakeup_due_soon_instead_of_waking_the_loop() -> None:
    soon = HARVEST / 2
    read_after, poll_woke = _read_time(soon)
    assert poll_woke is not None and poll_woke >= soon
    assert read_after >= soon - 0.002  # read at the poll's wake-up (its timer, not the socket)
    assert read_after <= poll_woke + 0.002


def test_a_reply_with_no_wakeup_due_soon_is_read_at_once() -> None:
    read_after, _ = _read_time(None)
    assert read_after < HARVEST / 2
    read_after, _ = _read_time(HARVEST * 4)  # a poll due, but later than HARVEST
    assert read_after < HARVEST / 2


def test_a_wakeup_for_a_time_out_releases_only_the_polls_already_due() -> None:
    """A time-out's wake-up comes ~3 ms before a poll's due time: the poll still waits."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        requests = Requests.of(loop)
        request = loop.create_future()
        requests.expire(0.02, request, lambda: TimeoutError("no reply"))
        due = time.monotonic_ns() + int((0.02 + SLACK) * 1e9) + 3 * MS
        await requests.sleep_until(due)
        assert isinstance(request.exception(), TimeoutError)
        return time.monotonic_ns() - due

    assert asyncio.run(run()) >= 0
