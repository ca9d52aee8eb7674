"""``timemon export``: one source's raw phase series for Stable32, TimeLab or ``analyze``."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from timemon.chain import StoreUnreadable, open_readonly
from timemon.export import ExportError, load_series, parse_time, write


def _fail(message: str) -> NoReturn:
    click.echo(f"timemon export: {message}", err=True)
    sys.exit(2)


@click.command("export")
@click.option("--store", required=True, type=click.Path(dir_okay=False), help="The sample store.")
@click.option("--source", required=True, help="Source name as in the config.")
@click.option("--from", "start", default="-1d", show_default=True,
              help="ISO 8601 time, 'now', or relative like -1h.")
@click.option("--to", "end", default="now", show_default=True, help="As --from.")
@click.option("--format", "fmt", type=click.Choice(["csv", "stable32"]), default="stable32",
              show_default=True, help="stable32: one phase value a line; csv: time,value.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (default stdout).")
def export(store: str, source: str, start: str, end: str, fmt: str, out: str | None) -> None:
    """Write the phase (offset, seconds) of one source on a regular grid; gaps as nan."""
    try:
        t0, t1 = parse_time(start), parse_time(end)
        db = open_readonly(store)
    except (ExportError, StoreUnreadable) as exc:
        _fail(str(exc))
    try:
        series = load_series(db, source, t0, t1)
        text = write(series, fmt, out)
    except ExportError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    finally:
        db.close()
    if not out:
        click.echo(text, nl=False)
