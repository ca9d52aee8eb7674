"""``timemon probe gnss``: print the receiver's epochs, like gpspipe -w.

Exit codes: 0 when --duration is up (or on Ctrl-C); 1 when the device cannot be
opened, the stream is not NMEA/UBX, or gpsd cannot be reached; 2 for usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any, NoReturn

import click

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Stop(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon: {message}", err=True)
    sys.exit(code)


def _line(record: dict[str, Any]) -> str:
    utc = record.get("utc") or "-"
    parts = [f"{utc}", f"mode {record['fix_mode']}", f"status {record['fix_status']}"]
    for key, label in (("satellites_used", "used"), ("satellites_visible", "visible"),
                       ("pdop", "pdop"), ("tdop", "tdop"), ("leap_seconds", "leap"),
                       ("time_accuracy_seconds", "tacc"), ("antenna_status_text", "antenna"),
                       ("offset_seconds", "offset")):
        if record.get(key) is not None:
            value = record[key]
            parts.append(f"{label} {value:.9g}" if isinstance(value, float) else f"{label} {value}")
    return ", ".join(parts)


async def _probe(device: str, baud: int, duration: float | None, fixed_delay: float,
                 as_json: bool) -> None:
    from timemon.probes.gnss import GnssError, GnssSource

    failure: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_epoch(epoch: Any) -> None:
        record = epoch.as_json()
        if epoch.utc_ns is not None and epoch.arrival_ns is not None:
            record["offset_seconds"] = (epoch.arrival_ns - epoch.utc_ns) / 1e9 - fixed_delay
            record["quality"] = "serial"
        click.echo(json.dumps(record) if as_json else _line(record))

    def on_error(reason: str, detail: str) -> None:
        fatal = {"unsupported_stream", "no_device", "open_failed", "device_lost",
                 "gpsd_unreachable", "gpsd_disconnected"}
        if reason in fatal and not failure.done():
            failure.set_result(f"{reason}: {detail}")

    source = GnssSource("cli", device, baud=baud, fixed_delay=fixed_delay,
                        on_epoch=on_epoch, on_error=on_error)
    if source.gpsd is None:
        try:
            source.open_port()
        except GnssError as exc:
            raise _Stop(str(exc)) from exc
    task = asyncio.create_task(source.run())
    try:
        done, _pending = await asyncio.wait({task, failure}, timeout=duration,
                                            return_when=asyncio.FIRST_COMPLETED)
        if failure in done:
            raise _Stop(failure.result())
        if task in done:
            task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


@click.command("gnss")
@click.argument("device", metavar="DEVICE|gpsd://HOST:PORT")
@click.option("--baud", default=9600, show_default=True, type=click.IntRange(50, 4_000_000),
              help="Serial speed (ignored for gpsd).")
@click.option("--duration", type=click.FloatRange(0.1, 86400 * 365),
              help="Seconds to read, then exit 0 (default: until Ctrl-C).")
@click.option("--fixed-delay", default=0.0, show_default=True,
              type=click.FloatRange(-1.0, 2.0),
              help="Receiver output latency subtracted from the serial offset (s).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per epoch.")
def probe_gnss(device: str, baud: int, duration: float | None, fixed_delay: float,
               as_json: bool) -> None:
    """Read a GNSS receiver (serial NMEA/UBX, or gpsd) and print one line per epoch.

    Each line has the receiver's UTC, fix mode and status as gpsd numbers them
    (mode 3 with status 7 is a time-only fix), satellites, DOP, time accuracy,
    antenna status, and the coarse serial offset (local - UTC).
    """
    from timemon.probes.gnss import GnssError, parse_gpsd_url

    try:
        parse_gpsd_url(device)
    except GnssError as exc:
        _fail(str(exc), EXIT_USAGE)
    logging.basicConfig(level=logging.ERROR, format="timemon: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(_probe(device, baud, duration, fixed_delay, as_json))
    except _Stop as exc:
        _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        pass
