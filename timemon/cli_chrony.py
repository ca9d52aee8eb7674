"""``timemon probe chrony``: read the node's chronyd over its command socket, like chronyc."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any, NoReturn

import click

from timemon.address import AddressError, parse_host_port
from timemon.kinds import CHRONY_DEFAULT_PORT, CHRONY_DEFAULT_SOCKET, UNIX_PATH_MAX

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon: {message}", err=True)
    sys.exit(code)


def _text(data: dict[str, Any]) -> str:
    offset = data["offset_seconds"]
    lines = [
        f"reference {data['reference_id']} ({data['reference'] or '-'}), "
        f"stratum {data['stratum']}, leap status {data['leap_status_text']}",
        "offset (local - reference) "
        + ("-" if offset is None else f"{offset:+.9f} s")
        + f", error bound {data['error_bound_seconds'] or 0:.9f} s",
        f"system time correction {data['system_time_correction_seconds']:+.9f} s, "
        f"last offset {data['last_offset_seconds']:+.9f} s, "
        f"RMS offset {data['rms_offset_seconds']:.9f} s",
        f"frequency {data['frequency_ratio'] * 1e6:+.3f} ppm, residual "
        f"{data['residual_frequency_ratio'] * 1e6:+.3f} ppm, skew "
        f"{data['skew_ratio'] * 1e6:.3f} ppm",
        f"root delay {data['root_delay_seconds']:.9f} s, root dispersion "
        f"{data['root_dispersion_seconds']:.9f} s, update interval "
        f"{data['update_interval_seconds']:.1f} s",
    ]
    for src in data["sources"]:
        lines.append(
            f"  {src['mode']:9} {src['state']:13} {src['address']:24} "
            f"stratum {src['stratum']:2} poll {src['poll']:3} reach {src['reachability']:3o} "
            f"last {src['last_sample_offset_seconds']:+.9f} s "
            f"+/- {src['last_sample_error_seconds']:.9f} s")
    return "\n".join(lines)


@click.command("chrony")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help=f"chronyd's command socket (bindcmdaddress) [default: "
                   f"{CHRONY_DEFAULT_SOCKET}].")
@click.option("--address", default=None, metavar="HOST[:PORT]",
              help=f"Ask chronyd over UDP instead (port {CHRONY_DEFAULT_PORT}; tracking, "
                   "sources and sourcestats only).")
@click.option("--timeout", default=1.0, show_default=True, type=click.FloatRange(0.001, 60),
              help="Seconds to wait for each reply.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def probe_chrony(socket_path: str | None, address: str | None, timeout: float,
                 as_json: bool) -> None:
    """Read chronyd's tracking, sources, sourcestats and server statistics
    (offset = local - reference = minus chronyd's 'System time' correction).

    Speaks chronyc's command protocol natively.  Exits 1 when chronyd does
    not answer (socket missing, no permission, timeout).
    """
    from timemon.probes.chrony import ChronyProbeError, probe_once

    if socket_path is not None and address is not None:
        _fail("give --socket or --address, not both", EXIT_USAGE)
    host = None
    if address is not None:
        try:
            host = parse_host_port(address, CHRONY_DEFAULT_PORT)
        except AddressError as exc:
            _fail(f"--address: {exc}", EXIT_USAGE)
    else:
        socket_path = socket_path or CHRONY_DEFAULT_SOCKET
        if len(socket_path.encode()) > UNIX_PATH_MAX:
            _fail(f"--socket must be a path of at most {UNIX_PATH_MAX} bytes", EXIT_USAGE)
    logging.basicConfig(level=logging.WARNING, format="timemon: %(message)s", stream=sys.stderr)
    try:
        state = asyncio.run(probe_once(socket_path, host, timeout))
    except ChronyProbeError as exc:
        _fail(str(exc), EXIT_FAILED)
    data = {"source": socket_path or str(host), **state.as_json()}
    click.echo(json.dumps(data) if as_json else _text(data))
