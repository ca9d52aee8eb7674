"""sd_notify: the agent (a subprocess) tells a test 'systemd' socket READY=1, then
WATCHDOG=1 at half WATCHDOG_USEC from its event loop, and stops pinging while the loop
is blocked (the documented debug aid TIMEMON_DEBUG_STALL_ON_SIGUSR2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_tcp_port

from timemon import sdnotify

WATCHDOG_USEC = 600_000  # pings expected every 0.3 s
STALL_SECONDS = 2.0


def _receive(sock: socket.socket, until: float) -> list[tuple[float, str]]:
    out = []
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        out.append((time.monotonic(), data.decode()))
    return out


def test_ready_then_watchdog_pings_and_silence_when_the_loop_hangs(
        tmp_path: Path, timemon_exe: str) -> None:
    config = tmp_path / "timemon.toml"
    config.write_text('[agent]\nstore = ""\n\n[[source]]\nkind = "kernel"\ninterval = 1\n')
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC),
           sdnotify.STALL_ENV: str(STALL_SECONDS)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([timemon_exe, "agent", "--config", str(config), "--listen",
                             f"127.0.0.1:{free_tcp_port()}"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        sock.settimeout(15)
        ready = sock.recv(4096).decode()
        assert ready.splitlines()[0] == "READY=1", ready
        assert "STATUS=1 sources" in ready
        messages = _receive(sock, time.monotonic() + 3.0)
        pings = [t for t, m in messages if m == "WATCHDOG=1"]
        assert len(pings) == len(messages), messages
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        period = WATCHDOG_USEC / 2e6
        # 3 s at 0.3 s: about 10 pings; each gap near the period (2 shared cores: slack).
        assert 8 <= len(pings) <= 11, pings
        assert all(0.7 * period < g < 1.8 * period for g in gaps), gaps
        # Hang the event loop: the pings stop for as long as it is blocked.
        os.kill(proc.pid, signal.SIGUSR2)
        stalled_at = time.monotonic()
        messages = _receive(sock, stalled_at + STALL_SECONDS + 1.5)
        times = [t for t, m in messages if m == "WATCHDOG=1"]
        assert times, "the pings did not come back after the loop was unblocked"
        before_resume = [t for t in times if t < stalled_at + STALL_SECONDS - 0.2]
        # At most one ping can already be in flight when the signal lands.
        assert len(before_resume) <= 1, [t - stalled_at for t in times]
        assert times[-1] - times[0] > 0.5  # and they continue at the usual rate
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        tail = _receive(sock, time.monotonic() + 0.5)
        assert tail and tail[-1][1] == "STOPPING=1", tail
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_no_notify_socket_means_no_notifier(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv(sdnotify.STALL_ENV, raising=False)

    async def main() -> object:
        return sdnotify.start_notifier()

    assert asyncio.run(main()) is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "x"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ],
)
def test_watchdog_period_is_half_watchdog_usec(environ: dict[str, str],
                                               expected: float | None) -> None:
    assert sdnotify.watchdog_period(environ) == expected


def test_abstract_socket_address(tmp_path: Path) -> None:
    name = f"timemon-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = sdnotify.Notifier("@" + name)
        assert notifier.send("READY=1")
        sock.settimeout(2)
        assert sock.recv(100) == b"READY=1"
        notifier.close()
        # Nobody listening: the message is lost, without an exception or a hang.
        lost = sdnotify.Notifier(str(tmp_path / "nobody.sock"))
        assert lost.send("WATCHDOG=1") is False
        lost.close()
    finally:
        sock.close()
