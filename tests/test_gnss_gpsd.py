"""The gpsd client path against a real gpsd (Debian's 3.22, run by gpsfake over the
captures), compared with what that gpsd prints live to gpspipe -w at the same time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

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


def stop_group(proc: subprocess.Popen) -> None:
    """gpsfake and the gpsd it started share a session: end both at once."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def read_both(port: int, seconds: float) -> tuple[GnssSource, list, list[str]]:
    """Our client and gpspipe -w on the same gpsd at the same time."""
    epochs: list = []
    source = GnssSource("gpsd", f"gpsd://127.0.0.1:{port}", on_epoch=epochs.append)
    pipe = await asyncio.create_subprocess_exec(
        find_binary("gpspipe"), "-w", "-x", f"{seconds:g}", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    task = asyncio.create_task(source.run())
    try:
        out, _ = await asyncio.wait_for(pipe.communicate(), seconds + 5)
    except TimeoutError:
        pipe.kill()
        out, _ = await pipe.communicate()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
    return source, epochs, out.decode(errors="replace").splitlines()


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
    with gpsfake(capture, port, cycle):
        source, epochs, lines = asyncio.run(read_both(port, seconds))
    theirs = last_tpv_per_time(lines)
    ours = {e.utc: e for e in epochs if e.utc}
    assert len(theirs) >= 10, lines[:5]
    common = set(theirs) & set(ours)
    # Both connect within a few packets of each other: nearly every epoch is in both.
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
