"""``timemon report``: a calibration-style report of one source over a period."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from timemon.chain import StoreUnreadable, open_readonly
from timemon.export import ExportError, load_series, parse_time


def _fail(message: str) -> NoReturn:
    click.echo(f"timemon report: {message}", err=True)
    sys.exit(2)


@click.command("report")
@click.option("--store", required=True, type=click.Path(dir_okay=False), help="The sample store.")
@click.option("--source", required=True, help="Source name as in the config.")
@click.option("--from", "start", default="-1d", show_default=True,
              help="ISO 8601 time, 'now', or relative like -1h.")
@click.option("--to", "end", default="now", show_default=True, help="As --from.")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True)
@click.option("--mask", "mask_name", help="Check MTIE/TDEV against a mask (G.811, G.8272-PRTC-A...).")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (default stdout).")
def report(store: str, source: str, start: str, end: str, fmt: str, mask_name: str | None,
           out: str | None) -> None:
    """Offset, stability, mask compliance, uncertainty and record integrity of one source."""
    from timemon.analysis.masks import UnknownMask, get_mask
    from timemon.report import build, to_html, to_json

    try:
        if mask_name:
            get_mask(mask_name)
        t0, t1 = parse_time(start), parse_time(end)
        db = open_readonly(store)
    except (ExportError, StoreUnreadable, UnknownMask) as exc:
        _fail(str(exc))
    try:
        data = build(db, load_series(db, source, t0, t1), mask_name)
    except (ExportError, ValueError) as exc:
        _fail(str(exc))
    finally:
        db.close()
    text = to_json(data) + "\n" if fmt == "json" else to_html(data)
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            _fail(f"cannot write {out}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)
