"""The GnssSource on a pty: epochs and offsets, an unplug mid-frame and a replug, the
"no PPS device" state, and an event loop that never waits on the port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gnss_support import PtyPlayer, epoch_chunks
from timemon.probes.gnss import GnssSource

from timemon.families import Families


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def play(player: PtyPlayer, chunks: list[bytes], gap: float = 0.01) -> None:
    for chunk in chunks:
        player.write(chunk)
        await asyncio.sleep(gap)


def collect(source: GnssSource) -> dict[str, list]:
    out = Families()
    source.collect(out)
    return {family.name: family.samples for family in out}


def test_unplug_mid_frame_and_replug(tmp_path: Path) -> None:
    link = tmp_path / "ttyGNSS"
    player = PtyPlayer(link)
    chunks = epoch_chunks("u-blox-m8t-time.log")

    async def scenario() -> None:
        source = GnssSource("gnss0", str(link), fixed_delay=0.1)
        task = asyncio.create_task(source.run())
        try:
            await wait_until(lambda: source._port is not None)
            await asyncio.sleep(0.05)
            await play(player, chunks[:20])
            await wait_until(lambda: source.up and source.epochs_total >= 18)
            assert source.quality == "serial" and source.offset is not None
            # Unplug in the middle of a UBX frame.
            player.write(chunks[20][:100])
            await asyncio.sleep(0.05)
            player.unplug()
            await wait_until(lambda: source.errors["device_lost"] == 1)
            assert not source.up
            await asyncio.sleep(1.5)  # reopen attempts fail while it is away
            assert source.errors["no_device"] == 1  # an outage counts once
            seen = source.epochs_total
            player.plug()
            await wait_until(lambda: source._port is not None)
            await asyncio.sleep(0.1)
            await play(player, chunks[21:40])
            await wait_until(lambda: source.up and source.epochs_total >= seen + 15)
            metrics = collect(source)
            assert metrics["timemon_gnss_fix_status"][0].value == 7
            assert metrics["timemon_offset_seconds"][0].labels["quality"] == "serial"
            assert source.status()["pps"] == "not configured"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()

    try:
        asyncio.run(scenario())
    finally:
        player.close()


def test_pps_configured_without_a_device_falls_back_to_serial() -> None:
    player = PtyPlayer()
    chunks = epoch_chunks("quectel-L70.log")

    async def scenario() -> None:
        source = GnssSource("gnss0", player.device, pps="/dev/pps7")
        task = asyncio.create_task(source.run())
        try:
            await wait_until(lambda: source._port is not None)
            await asyncio.sleep(0.05)
            await play(player, chunks)
            await wait_until(lambda: source.epochs_total >= 15 and source.up)
            assert source.errors["no_pps_device"] >= 1
            assert source.status()["pps"].startswith("no PPS device")
            assert source.offset_labels() == {"quality": "serial"}
            metrics = collect(source)
            assert metrics["timemon_gnss_pps_active"][0].value == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()

    try:
        asyncio.run(scenario())
    finally:
        player.close()


def test_unsupported_stream_sets_the_source_down() -> None:
    player = PtyPlayer()
    chunks = epoch_chunks("trimble-res720.log")

    async def scenario() -> None:
        source = GnssSource("gnss0", player.device)
        task = asyncio.create_task(source.run())
        try:
            await wait_until(lambda: source._port is not None)
            await asyncio.sleep(0.05)
            await play(player, chunks[:20], gap=0.001)
            await wait_until(lambda: source.errors["unsupported_stream"] == 1)
            assert not source.up and not source.stream_supported
            assert collect(source)["timemon_gnss_stream_supported"][0].value == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()

    try:
        asyncio.run(scenario())
    finally:
        player.close()


def test_event_loop_never_waits_on_the_port() -> None:
    """A ticker on the same loop keeps its 10 ms rhythm while a capture is read."""
    player = PtyPlayer()
    chunks = epoch_chunks("ublox-zed-f9t-ubx_nmea_l5.log")

    async def scenario() -> float:
        source = GnssSource("gnss0", player.device)
        task = asyncio.create_task(source.run())
        worst = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal worst
            while not stop:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - before - 0.01)

        tick = asyncio.create_task(ticker())
        try:
            await wait_until(lambda: source._port is not None)
            await asyncio.sleep(0.5)  # silence on the line: the loop must stay free
            await play(player, chunks, gap=0.05)
            await wait_until(lambda: source.epochs_total >= 8)
        finally:
            stop = True
            await tick
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()
        return worst

    try:
        worst = asyncio.run(scenario())
    finally:
        player.close()
    # Decoding runs on the source's worker thread; the bound is loose because the
    # machine is shared (GIL hand-offs and other processes: 10-15 ms seen, rarely more).
    assert worst < 0.1, worst
