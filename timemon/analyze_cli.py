"""``timemon analyze FILE``: stability tables, JSON and plots from a data file."""

from __future__ import annotations

import json
import math
import sys

import click
import numpy as np

from timemon.analysis import STATISTICS, stability_table
from timemon.analysis.confidence import StabilityTable
from timemon.analysis.loader import DataFileError, infer_rate, load
from timemon.analysis.masks import Mask, UnknownMask, get_mask

DEFAULT_STATS = ("oadev",)
_LABEL = {
    "adev": "Allan deviation",
    "oadev": "Overlapping Allan deviation",
    "mdev": "Modified Allan deviation",
    "tdev": "Time deviation (s)",
    "hdev": "Hadamard deviation",
    "ohdev": "Overlapping Hadamard deviation",
    "totdev": "Total deviation",
    "mtie": "MTIE (s)",
    "tierms": "TIE rms (s)",
    "theo1": "Theo1 deviation",
    "mtotdev": "Modified total deviation",
    "ttotdev": "Time total deviation (s)",
    "htotdev": "Hadamard total deviation",
}


def _fail(msg: str) -> None:
    """Exit 2 with one line on stderr (DESIGN.md: usage errors, never a traceback)."""
    click.echo(f"timemon analyze: {msg}", err=True)
    sys.exit(2)


def _parse_taus(value: str) -> str | list[float]:
    if value in ("octave", "decade", "all"):
        return value
    try:
        taus = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use octave, decade, all or a comma list of seconds like 1,2,4",
            param_hint="--taus",
        ) from None
    if not taus or any(not math.isfinite(t) or t <= 0 for t in taus):
        raise click.BadParameter(f"{value!r}: taus must be positive seconds", param_hint="--taus")
    return taus


def _fmt(v: float) -> str:
    return "        -" if not math.isfinite(v) else f"{v:.4e}"


# Statistics that a mask constrains, and the mask table each one is compared with.
MASKED_STATS = {"mtie": "mtie", "tdev": "tdev"}


def _mask_limits(t: StabilityTable, mask: Mask | None) -> np.ndarray | None:
    """The mask's limit at each tau of an MTIE or TDEV table (NaN where undefined)."""
    if mask is None or t.stat not in MASKED_STATS:
        return None
    return np.asarray(mask.limit_seconds(MASKED_STATS[t.stat], t.tau), dtype=np.float64)


def _print_table(t: StabilityTable, mask: Mask | None = None) -> None:
    limits = _mask_limits(t, mask)
    title = f"{_LABEL[t.stat]} ({t.stat}), {t.data_type} data, rate {t.rate:g} Hz"
    click.echo(title + (f", mask {mask.name}" if limits is not None and mask else ""))
    header = (f"{'AF':>8} {'tau':>11} {'n':>9} {'alpha':>5} "
              f"{'min sigma':>11} {'sigma':>11} {'max sigma':>11}")
    click.echo(header + (f" {'mask':>11} verdict" if limits is not None else ""))
    for i in range(t.tau.size):
        row = (f"{int(t.m[i]):>8} {t.tau[i]:>11.4e} {int(t.n[i]):>9} {int(t.alpha[i]):>5} "
               f"{_fmt(t.ci_low[i]):>11} {_fmt(t.dev[i]):>11} {_fmt(t.ci_high[i]):>11}")
        if limits is not None:
            limit = float(limits[i])
            verdict = ("-" if not math.isfinite(limit)
                       else "VIOLATION" if t.dev[i] > limit else "ok")
            row += f" {_fmt(limit):>11} {verdict}"
        click.echo(row)
    click.echo("")


def _json_default(v: float) -> float | None:
    return None if not math.isfinite(v) else v


def _json_line(t: StabilityTable, mask: Mask | None = None) -> str:
    points = [
        {k: (_json_default(v) if isinstance(v, float) else v) for k, v in pt.items() if k != "edf"}
        for pt in t.points()
    ]
    obj: dict[str, object] = {"stat": t.stat, "data_type": t.data_type, "rate": t.rate,
                              "points": points}
    limits = _mask_limits(t, mask)
    if limits is not None and mask is not None:
        obj["mask"] = mask.name
        for point, limit in zip(points, limits, strict=True):
            point["mask_limit"] = _json_default(float(limit))
            point["violation"] = bool(math.isfinite(limit) and point["dev"] is not None
                                      and point["dev"] > limit)
    return json.dumps(obj, allow_nan=False)


def _plot(tables: list[StabilityTable], out: str, mask: Mask | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _fail("--plot needs matplotlib: pip install 'timemon[plot]'")
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for t in tables:
        lo = t.dev - t.ci_low
        hi = t.ci_high - t.dev
        yerr = None
        if t.tau.size and all(map(math.isfinite, [*lo, *hi])):
            yerr = [lo, hi]
        ax.errorbar(t.tau, t.dev, yerr=yerr, fmt="o-", ms=3, capsize=2, label=t.stat)
        if mask is not None and t.stat in MASKED_STATS and t.tau.size:
            grid = np.geomspace(t.tau.min(), t.tau.max(), 200)
            ax.plot(grid, mask.limit_seconds(MASKED_STATS[t.stat], grid), "--",
                    label=f"{mask.name} {MASKED_STATS[t.stat].upper()} mask")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("averaging time tau (s)")
    ax.set_ylabel("sigma(tau)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        _fail(f"cannot write plot {out}: {exc.strerror or exc}")
    finally:
        plt.close(fig)


@click.command("analyze")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data-type", type=click.Choice(["phase", "freq"]), default="phase",
              show_default=True, help="Phase in seconds, or fractional frequency.")
@click.option("--rate", type=float, default=None,
              help="Samples per second (default: from the time column, else 1).")
@click.option("--stat", "stats", multiple=True, type=click.Choice(sorted(STATISTICS)),
              help="Statistic to compute; repeat for several (default: oadev).")
@click.option("--taus", default="octave", show_default=True,
              help="octave, decade, all, or seconds as a comma list (1,2,4).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per statistic per line.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Write a log-log sigma-tau plot to this PNG file.")
@click.option("--mask", "mask_name", default=None, metavar="NAME",
              help="ITU-T mask for the mtie and tdev statistics (e.g. G.8272-PRTC-A): "
                   "marks violating points and draws the mask on the plot.")
def analyze(file: str, data_type: str, rate: float | None, stats: tuple[str, ...], taus: str,
            as_json: bool, plot_out: str | None, mask_name: str | None) -> None:
    """Frequency-stability statistics of a phase or frequency data FILE."""
    mask = None
    if mask_name is not None:
        try:
            mask = get_mask(mask_name)
        except UnknownMask as exc:
            raise click.BadParameter(str(exc), param_hint="--mask") from exc
    tau_spec = _parse_taus(taus)
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise click.BadParameter("must be a positive number of samples per second",
                                 param_hint="--rate")
    try:
        df = load(file)
        if rate is None:
            rate = infer_rate(df.times, file) if df.times is not None else 1.0
    except DataFileError as exc:
        _fail(str(exc))
        return
    tables: list[StabilityTable] = []
    for stat in stats or DEFAULT_STATS:
        try:
            t = stability_table(stat, df.values, rate, data_type, tau_spec)
        except ValueError as exc:
            _fail(f"{file}: {stat}: {exc}")
            return
        if t.tau.size == 0:
            _fail(f"{file}: {stat}: too few points ({df.values.size}) for any requested tau")
        tables.append(t)
    for t in tables:
        if as_json:
            click.echo(_json_line(t, mask))
        else:
            _print_table(t, mask)
    if plot_out:
        _plot(tables, plot_out, mask)
