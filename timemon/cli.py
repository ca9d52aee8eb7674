"""The ``timemon`` command line (click).

Exit codes: 0 fine; 1 the measurement failed or was refused; 2 usage or
config error.  Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import sys
from typing import Any, NoReturn

import click

from timemon import __version__
from timemon.address import AddressError, parse_host_port
from timemon.config import (
    DEFAULT_PORT,
    AgentConfig,
    ConfigError,
    default_config,
    load_config,
    parse_listen,
)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon: {message}", err=True)
    sys.exit(code)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _LazyGroup(click.Group):
    """Commands with heavy imports (numpy, ...) load only when used, so probes start fast.

    ``lazy`` maps a command name to ``module:attribute`` of its click command.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, lazy={"analyze": "timemon.analyze_cli:analyze",
                   "verify": "timemon.cli_verify:verify",
                   "export": "timemon.cli_export:export",
                   "report": "timemon.cli_report:report",
                   "status": "timemon.cli_status:status"},
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="timemon")
def main() -> None:
    """Time-and-frequency synchronization monitor.

    Measures this node's clock against NTP servers (and the kernel clock
    discipline), computes offsets, delays and stability statistics, and
    serves them as Prometheus metrics.

    \b
    Start here:
      timemon agent --config /etc/timemon/timemon.toml   run the agent
      timemon probe ntp pool.example.org                 one NTP measurement
      timemon check-config /etc/timemon/timemon.toml     validate a config

    Exit codes: 0 fine, 1 measurement failed or refused, 2 usage or config error.
    """


# -- agent ---------------------------------------------------------------------


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML config file. Without it: the kernel clock plus the servers on "
                   "'server' lines of the node's chrony.conf or ntp.conf.")
@click.option("--listen", metavar="HOST:PORT",
              help=f"Address for /metrics (overrides the config; default 0.0.0.0:{DEFAULT_PORT}).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log verbosity (overrides the config; default info).")
@click.option("--web-config", "web_config_override", type=click.Path(dir_okay=False),
              help="TLS and basic auth of /metrics: a web-config YAML in the Prometheus "
                   "exporter-toolkit format (overrides [agent] web_config).")
def agent(config_path: str | None, listen: str | None, log_level: str | None,
          web_config_override: str | None = None) -> None:
    """Run the monitoring agent in the foreground (SIGTERM stops, SIGHUP reloads the
    config and the web config)."""
    from timemon.agent import Agent
    from timemon.webconfig import WebConfigError, load_web_config, web_config_path

    try:
        config: AgentConfig = load_config(config_path) if config_path else default_config()
        listen_addr = parse_listen(listen) if listen else None
    except (ConfigError, ValueError, AddressError) as exc:
        _fail(str(exc), EXIT_USAGE)
    _setup_logging(log_level or config.log_level)
    web_path = web_config_path(web_config_override, config.web_config, config.path)
    try:
        web = load_web_config(web_path) if web_path else None
    except WebConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    from timemon.chain import SigningError

    try:
        runner = Agent(config, listen=listen_addr, web=web, web_override=web_config_override)
    except SigningError as exc:  # [agent] signing_key unreadable or not Ed25519
        _fail(f"{config.path}: [agent] signing_key: {exc}", EXIT_USAGE)
    try:
        asyncio.run(runner.run())
    except OSError as exc:  # the listen port is taken, and the like
        _fail(f"cannot start: {exc.strerror or exc}", EXIT_FAILED)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Validate a config file; print its sources, or the first error and exit 2."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    host, port = config.listen
    click.echo(f"{file}: OK, listen {host}:{port}, store {config.store or 'none'}, "
               f"{len(config.sources)} sources")
    for sc in config.sources:
        click.echo(f"  {sc.name:20} {sc.kind:8} every {sc.interval:g} s")


# -- probe ---------------------------------------------------------------------


# Probes of later kinds register here as "kind": "module:command".
PROBE_COMMANDS: dict[str, str] = {
    "gnss": "timemon.cli_gnss:probe_gnss",
    "ptp": "timemon.cli_ptp:probe_ptp",
    "chrony": "timemon.cli_chrony:probe_chrony",
}


@main.group(cls=_LazyGroup, lazy=PROBE_COMMANDS)
def probe() -> None:
    """One-shot measurements, like ntpdate -q, pmc or gpspipe."""


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    for rec in records:
        if as_json:
            click.echo(json.dumps(rec, default=str))
        elif "error" in rec:
            click.echo(f"server {rec['source']}: {rec['error']} ({rec.get('detail', '')})")
        else:
            click.echo(
                f"server {rec['source']}, stratum {rec['stratum']}, "
                f"offset {rec['offset_seconds']:+.9f} s, delay {rec['delay_seconds']:.9f} s, "
                f"refid {rec['refid']}, leap {rec['leap_text']}")


@probe.command("ntp")
@click.argument("server", metavar="HOST[:PORT]")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 100000),
              help="Number of requests.")
@click.option("--interval", default=2.0, show_default=True, type=float,
              help="Seconds between requests (at least 1, or 0.01 with --lab).")
@click.option("--lab", is_flag=True,
              help="The server is yours: allow intervals down to 0.01 s.")
@click.option("--timeout", default=2.0, show_default=True, type=click.FloatRange(0.001, 60),
              help="Seconds to wait for each reply.")
@click.option("--basic", is_flag=True,
              help="Basic mode only: do not ask the server for interleaved replies.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per measurement.")
def probe_ntp(server: str, count: int, interval: float, lab: bool, timeout: float,
              basic: bool, as_json: bool) -> None:
    """Measure the local clock against an NTP server (offset = local - server).

    Uses kernel timestamps, and the interleaved mode where the server offers it
    (chronyd does), in which the server reports when its reply really left.
    Exits 1 when no request gave an accepted reply.
    """
    from timemon.probes.ntp import MIN_INTERVAL_LAB_CLI, NtpProbeError, probe_once

    floor = MIN_INTERVAL_LAB_CLI if lab else 1.0
    if not (math.isfinite(interval) and interval >= floor):
        _fail(f"--interval must be at least {floor:g} s"
              + ("" if lab else " (use --lab for a server you operate)"), EXIT_USAGE)
    try:
        address = parse_host_port(server, 123)
    except AddressError as exc:
        _fail(str(exc), EXIT_USAGE)
    logging.basicConfig(level=logging.WARNING, format="timemon: %(message)s", stream=sys.stderr)
    try:
        records = asyncio.run(probe_once(address, count, interval, timeout,
                                         interleaved=not basic))
    except NtpProbeError as exc:
        _fail(f"{server}: {exc}", EXIT_FAILED)
    _print_records(records, as_json)
    if not any("offset_seconds" in r for r in records):
        _fail(f"{server}: no accepted reply", EXIT_FAILED)


@probe.command("kernel")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def probe_kernel(as_json: bool) -> None:
    """Read the kernel clock discipline (adjtimex), like node_exporter's timex collector."""
    from timemon.probes.kernel import KernelClockError, read_kernel_clock

    try:
        clock = read_kernel_clock()
    except KernelClockError as exc:
        _fail(str(exc), EXIT_FAILED)
    data = clock.as_json()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:32} {value}")
