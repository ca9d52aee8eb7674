"""The gpsd client path against a real gpsd (Debian's 3.22, run by gpsfake over the
captures), compared with what that gpsd prints live to gpspipe -w at the same time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import find_binary, free_tcp_port
from gnss_support import DATA, last_tpv_per_time
from timemon.probes.gnss import GnssSource

pytestmark = pytest.mark.integration


@contextmanager
def gpsfake(capture: str, port: int, cycle: float) -> Iterator[subprocess.Popen]:
    """gpsfake (and its gpsd) on loopback; -n: gpsd opens the fake device at once,
    -1: the capture plays once; -c: seconds between packets."""
    exe = find_binary("gpsfake")
    find_binary("gpsd")
    proc = subprocess.Popen([exe, "-1", "-n", "-q", "-P", str(port), "-c", str(cycle),
                             str(DATA / capture)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        yield proc
    finally:
        stop_group(proc)


@contextmanager
def gated_gpsfake(capture: str, port: int, cycle: float) -> Iterator[Callable[[], None]]:
    """As gpsfake, but the capture does not play until the callable yielded is called
    (see gpsfake_gated.py): a short capture played at once can be over before a test's
    clients are watching, when the machine stalls. Run by gpsfake's own interpreter,
    which has Debian's python3-gps."""
    exe = find_binary("gpsfake")
    find_binary("gpsd")
    interpreter = Path(exe).read_text().splitlines()[0].removeprefix("#!").strip()
    proc = subprocess.Popen([interpreter, str(Path(__file__).parent / "gpsfake_gated.py"),
                             str(port), str(cycle), str(DATA / capture)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def start() -> None:
        proc.stdin.write(b"start\n")
        proc.stdin.flush()

    try:
        wait_port(port)
        yield start
    finally:
        stop_group(proc)
        proc.stdin.close()


def stop_group(proc: subprocess.Popen) -> None:
    """gpsfake and the gpsd it started share a session: end both at once."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def read_both(port: int, seconds: float,
                    release: Callable[[], None]) -> tuple[GnssSource, list, list[str]]:
    """Our client and gpspipe -w on the same gpsd at the same time. `release` starts
    the capture once both are watching, so both see it from its first packet."""
    epochs: list = []
    source = GnssSource("gpsd", f"gpsd://127.0.0.1:{port}", on_epoch=epochs.append)
    pipe = await asyncio.create_subprocess_exec(
        find_binary("gpspipe"), "-w", "-x", f"{seconds:g}", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    task = asyncio.create_task(source.run())
    lines: list[str] = []

    async def read_pipe() -> None:
        watching = device_open = released = False
        while line := await pipe.stdout.readline():
            lines.append(line.decode(errors="replace").rstrip("\r\n"))
            if released:
                continue
            report = json.loads(lines[-1])
            watching = watching or report["class"] == "WATCH"
            # gpsd lists the fake device once it has opened it, or says so later.
            device_open = device_open or bool(report.get("devices")) or (
                report["class"] == "DEVICE" and "activated" in report)
            if watching and device_open:
                # Ours is connected once gpsd's banner (VERSION) has reached it; it
                # wrote its WATCH on connecting, which gpsd takes up within one pass of
                # its select loop: 0.2 s leaves room for that.
                while source.gpsd_version is None:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                release()
                released = True
        await pipe.wait()

    try:
        await asyncio.wait_for(read_pipe(), seconds + 10)
    except TimeoutError:
        pipe.kill()
        await pipe.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
    return source, epochs, lines


def wait_port(port: int, timeout: float = 10.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("gpsd did not listen")


@pytest.mark.parametrize(("capture", "cycle", "seconds"), [
    ("quectel-L70.log", 0.01, 4.0),
    ("u-blox-m8t-time.log", 0.002, 6.0),
])
def test_client_agrees_with_gpspipe(capture: str, cycle: float, seconds: float) -> None:
    port = free_tcp_port()
    with gated_gpsfake(capture, port, cycle) as start:
        source, epochs, lines = asyncio.run(read_both(port, seconds, start))
    theirs = last_tpv_per_time(lines)
    ours = {e.utc: e for e in epochs if e.utc}
    assert len(theirs) >= 10, lines[:5]
    common = set(theirs) & set(ours)
    # Both watch from the first packet; the last epochs may still be on their way when
    # gpspipe's -x ends on a slow machine, so nearly every epoch, not all, is in both.
    assert len(common) >= 0.8 * len(theirs), (sorted(theirs), sorted(ours))
    for when in common:
        assert ours[when].fix_mode == theirs[when]["mode"], when
        assert ours[when].fix_status == theirs[when].get("status", 1 if ours[when].fix_mode >= 2
                                                         else 0), when
    assert source.gpsd_version == "3.22"
    if capture == "quectel-L70.log":
        # gpsd 3.22 sends TOFF (its serial time offset) for this NMEA stream.
        assert source.quality == "serial" and source.offset is not None
        assert source.samples_total >= 10
        arrival = ours[max(common)].arrival_ns
        want = (arrival - ours[max(common)].utc_ns) / 1e9
        assert abs(source.offset - want) < 1.0
    else:
        # 3.22 reports this time-only M8T as mode 0, unlike the newer gpsd of the .chk
        # (mode 3, status 7): what the live gpsd says is what the client must report.
        assert {e.fix_mode for e in ours.values()} == {0}


def test_reconnects_when_gpsd_restarts() -> None:
    port = free_tcp_port()

    async def scenario() -> None:
        source = GnssSource("gpsd", f"gpsd://127.0.0.1:{port}")
        task = asyncio.create_task(source.run())
        try:
            with gpsfake("quectel-L70.log", port, 0.02):
                await asyncio.sleep(3.0)
                first = source.epochs_total
                assert first >= 5 and source.up
            await asyncio.sleep(1.5)
            assert source.errors["gpsd_disconnected"] >= 1
            assert not source.up
            with gpsfake("garmin15x.log", port, 0.02):
                deadline = time.monotonic() + 12
                while source.epochs_total < first + 4 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert source.epochs_total >= first + 4
                assert source.epoch is not None and source.epoch.utc.startswith("2022-10-18")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()

    asyncio.run(scenario())
