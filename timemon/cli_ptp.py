"""``timemon probe ptp``: read one ptp4l instance through its management socket, like pmc."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any, NoReturn

import click

from timemon.kinds import PTP_DEFAULT_DOMAIN, PTP_DEFAULT_UDS, UNIX_PATH_MAX

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon: {message}", err=True)
    sys.exit(code)


def _text(data: dict[str, Any]) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:+.9f} s"

    lines = [
        f"port {data['port_identity']}: {data['port_state']}",
        f"offset (local - master) {seconds(data['offset_seconds'])}"
        + (f" from {data['offset_origin']}" if data["offset_origin"] else ""),
        f"mean path delay {data['mean_path_delay_seconds']:.9f} s",
        f"grandmaster {data['gm_identity']} "
        + ("present" if data["gm_present"] else "not present (this clock is its own)"),
        f"clockClass {data['clock_class']}, clockAccuracy 0x{data['clock_accuracy']:02x}, "
        f"offsetScaledLogVariance 0x{data['offset_scaled_log_variance']:04x}, "
        f"priority1 {data['priority1']}, priority2 {data['priority2']}, "
        f"stepsRemoved {data['steps_removed']}",
        f"currentUtcOffset {data['utc_offset_seconds']} s "
        f"({'valid' if data['utc_offset_valid'] else 'not valid'}), "
        f"leap61 {int(data['leap61'])}, leap59 {int(data['leap59'])}, "
        f"timeTraceable {int(data['time_traceable'])}, "
        f"frequencyTraceable {int(data['frequency_traceable'])}, "
        f"ptpTimescale {int(data['ptp_timescale'])}, timeSource 0x{data['time_source']:02x}",
    ]
    messages = data["messages"]
    if messages is not None:
        for direction in ("rx", "tx"):
            counts = ", ".join(f"{k} {v}" for k, v in messages[direction].items() if v)
            lines.append(f"{direction} messages: {counts or 'none'}")
    return "\n".join(lines)


@click.command("ptp")
@click.option("--uds", default=PTP_DEFAULT_UDS, show_default=True, metavar="PATH",
              help="ptp4l's management socket (uds_address in its config).")
@click.option("--domain", default=PTP_DEFAULT_DOMAIN, show_default=True,
              type=click.IntRange(0, 255),
              help="ptp4l's domainNumber (ptp4l ignores requests for other domains).")
@click.option("--timeout", default=1.0, show_default=True, type=click.FloatRange(0.001, 60),
              help="Seconds to wait for ptp4l's replies.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def probe_ptp(uds: str, domain: int, timeout: float, as_json: bool) -> None:
    """Read a ptp4l instance over its management socket (offset = local - master).

    Asks for the IEEE 1588 data sets and linuxptp's TIME_STATUS_NP and
    PORT_STATS_NP, as 'pmc -u -b 0' does, and prints port state, offset,
    mean path delay, grandmaster and time properties.  The offset is printed
    only when a port is SLAVE or UNCALIBRATED.  Exits 1 when ptp4l does not
    answer (socket missing, no permission, timeout).
    """
    from timemon.probes.ptp import PtpProbeError, probe_once

    if not uds or len(uds.encode()) > UNIX_PATH_MAX:
        _fail(f"--uds must be a socket path of 1-{UNIX_PATH_MAX} bytes", EXIT_USAGE)
    logging.basicConfig(level=logging.WARNING, format="timemon: %(message)s", stream=sys.stderr)
    try:
        state = asyncio.run(probe_once(uds, domain, timeout))
    except PtpProbeError as exc:
        detail = str(exc)
        _fail(detail if uds in detail else f"{uds}: {detail}", EXIT_FAILED)
    data = {"source": uds, **state.as_json()}
    click.echo(json.dumps(data) if as_json else _text(data))
