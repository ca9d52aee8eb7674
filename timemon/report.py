"""A calibration-style report of one source over a period, as JSON and self-contained HTML.

The numbers come from the store only: the samples (offset = local − reference),
the per-source metadata that sources record (``source_meta``), and the hash
chain's verification.  Uncertainty follows the GUM: type A from the scatter of
the offsets (effective sample count corrected for lag-1 autocorrelation), type
B from the protocol's error bound where the store has it (half the round-trip
delay, path asymmetry unknown, taken as rectangular: u = (delay/2)/√3);
expanded with k = 2.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sqlite3
from datetime import UTC, datetime
from typing import Any

import numpy as np

from timemon import chain
from timemon.analysis import stability_table
from timemon.analysis.masks import get_mask, violations
from timemon.export import Series

STATS = ("oadev", "mdev", "tdev", "mtie")
_TITLES = {"oadev": "Overlapping Allan deviation", "mdev": "Modified Allan deviation",
           "tdev": "Time deviation (s)", "mtie": "MTIE (s)"}


def _f(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def build(db: sqlite3.Connection, s: Series, mask_name: str | None = None) -> dict[str, Any]:
    assert s.grid is not None
    sid = db.execute("SELECT id FROM sources WHERE name = ? AND kind = ?",
                     (s.source, s.kind)).fetchone()[0]
    meta = {k: v for k, v in db.execute(
        "SELECT key, value FROM source_meta WHERE source_id = ? ORDER BY key", (sid,))}
    x = s.offset
    n = int(x.size)
    dt_s = np.diff(s.grid_t_ns) / 1e9 if s.grid_t_ns is not None else np.zeros(0)
    gap_runs = _gap_runs(s.grid)
    # Frequency offset: least-squares slope of phase against time (local − reference, s/s).
    tt = (s.t_ns - s.t_ns[0]) / 1e9
    slope, intercept = np.polyfit(tt, x, 1)
    resid = x - (slope * tt + intercept)
    slope_se = float(np.sqrt(np.sum(resid**2) / max(n - 2, 1) / np.sum((tt - tt.mean())**2)))
    # Type A: standard deviation of the mean with an effective n for correlated samples.
    d = x - x.mean()
    r1 = float(np.sum(d[1:] * d[:-1]) / np.sum(d * d)) if np.any(d) else 0.0
    r1 = min(max(r1, 0.0), 0.99)
    n_eff = n * (1 - r1) / (1 + r1)
    u_a = float(x.std(ddof=1) / math.sqrt(n_eff))
    delays = s.delay[np.isfinite(s.delay)]
    u_b = float(np.median(delays) / 2 / math.sqrt(3)) if delays.size else None
    u_c = math.sqrt(u_a**2 + (u_b or 0.0) ** 2)
    stability = {}
    for stat in STATS:
        t = stability_table(stat, s.grid, s.rate, "phase", "octave")
        stability[stat] = [{k: (_f(v) if isinstance(v, float) else v) for k, v in p.items()}
                           for p in t.points()]
    mask = None
    if mask_name:
        m = get_mask(mask_name)
        mask = {"name": m.name, "checks": []}
        for stat in ("mtie", "tdev"):
            pts = stability[stat]
            taus = np.array([p["tau"] for p in pts])
            vals = np.array([p["dev"] if p["dev"] is not None else np.nan for p in pts])
            limit = m.limit_seconds(stat, taus) if taus.size else np.zeros(0)
            bad = violations(m, stat, taus, vals) if taus.size else np.zeros(0, bool)
            checked = int(np.isfinite(limit).sum())
            mask["checks"].append({
                "statistic": stat, "points_checked": checked,
                "violations": [float(t) for t in taus[bad]],
                "limits": [{"tau": float(a), "limit": _f(b)} for a, b in zip(taus, limit,
                                                                            strict=True)],
                "pass": checked > 0 and not bad.any()})
        mask["pass"] = all(c["pass"] for c in mask["checks"] if c["points_checked"])
    result = chain.verify_store(db)
    mine = next(r for r in result.sources if r.source == s.source and r.kind == s.kind)
    pct = np.percentile(x, [1, 5, 50, 95, 99])
    return {
        "report": "timemon calibration-style report",
        "generated": _iso(int(datetime.now(UTC).timestamp() * 1e9)),
        "source": s.source, "kind": s.kind,
        "period": {"from": _iso(s.start_ns), "to": _iso(s.end_ns),
                   "first_sample": _iso(int(s.t_ns[0])), "last_sample": _iso(int(s.t_ns[-1]))},
        "reference": meta,
        "samples": {"count": n, "tau0_seconds": s.tau0_ns / 1e9, "grid_points": int(s.grid.size),
                    "gaps": s.gaps, "gap_runs": len(gap_runs),
                    "longest_gap_seconds": max(gap_runs, default=0) * s.tau0_ns / 1e9,
                    "coverage": 1 - s.gaps / s.grid.size, "duplicates_dropped": s.duplicates,
                    "max_interval_seconds": _f(float(dt_s.max())) if dt_s.size else None},
        "offset_seconds": {"mean": float(x.mean()), "rms": float(np.sqrt(np.mean(x**2))),
                           "std": float(x.std(ddof=1)), "max_abs": float(np.abs(x).max()),
                           "p1": float(pct[0]), "p5": float(pct[1]), "p50": float(pct[2]),
                           "p95": float(pct[3]), "p99": float(pct[4])},
        "frequency_offset": {"ratio": float(slope), "standard_error": slope_se},
        "uncertainty": {"u_a_seconds": u_a, "u_b_seconds": u_b, "combined_seconds": u_c,
                        "coverage_factor": 2, "expanded_seconds": 2 * u_c,
                        "n_effective": n_eff,
                        "statement": _statement(float(x.mean()), u_a, u_b, u_c)},
        "stability": stability,
        "mask": mask,
        "chain": {"ok": mine.problem is None, "head": mine.head, "head_seq": mine.head_seq,
                  "verified_seq": mine.verified_seq, "unverified_tail": mine.unverified_tail,
                  "checkpoints": mine.checkpoints,
                  "problem": str(mine.problem) if mine.problem else None},
    }


def _gap_runs(grid: np.ndarray) -> list[int]:
    runs, cur = [], 0
    for bad in np.isnan(grid).tolist():
        if bad:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs + ([cur] if cur else [])


def _statement(mean: float, u_a: float, u_b: float | None, u_c: float) -> str:
    b = (f"type B {u_b:.3g} s from the error bound (half the median round-trip delay, "
         "rectangular)" if u_b is not None else "no error bound recorded for type B")
    return (f"Mean offset (local - reference) {mean:.4g} s with expanded uncertainty "
            f"U = {2 * u_c:.3g} s (k = 2, about 95 % coverage); standard uncertainties: "
            f"type A {u_a:.3g} s from the scatter of the samples, {b}.")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, allow_nan=False)


def _plot_png(report: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stat in ("oadev", "mdev"):
        pts = [p for p in report["stability"][stat] if p["dev"]]
        tau = [p["tau"] for p in pts]
        dev = [p["dev"] for p in pts]
        lo = [p["dev"] - (p["ci_low"] or p["dev"]) for p in pts]
        hi = [(p["ci_high"] or p["dev"]) - p["dev"] for p in pts]
        ax.errorbar(tau, dev, yerr=[lo, hi], fmt="o-", ms=3, capsize=2, label=stat)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("averaging time tau (s)")
    ax.set_ylabel("sigma_y(tau)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def to_html(report: dict[str, Any]) -> str:
    e = html.escape

    def table(rows: list[list[Any]], head: list[str]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{e(_cell(c))}</td>" for c in r) + "</tr>"
                       for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    r = report
    parts = [f"<h1>Time-transfer report: {e(r['source'])} ({e(r['kind'])})</h1>",
             f"<p>Period {e(r['period']['from'])} to {e(r['period']['to'])}; "
             f"generated {e(r['generated'])} by timemon.</p>",
             "<h2>Reference chain</h2>",
             table([[k, v] for k, v in r["reference"].items()] or [["(not recorded)", ""]],
                   ["item", "value"]),
             "<h2>Samples and coverage</h2>",
             table([[k, v] for k, v in r["samples"].items()], ["quantity", "value"]),
             "<h2>Offset (local − reference)</h2>",
             table([[k, v] for k, v in r["offset_seconds"].items()], ["statistic", "seconds"]),
             f"<p>Frequency offset {_cell(r['frequency_offset']['ratio'])} "
             f"(standard error {_cell(r['frequency_offset']['standard_error'])}).</p>",
             "<h2>Uncertainty</h2>", f"<p>{e(r['uncertainty']['statement'])}</p>"]
    for stat, pts in r["stability"].items():
        parts.append(f"<h2>{e(_TITLES[stat])}</h2>")
        parts.append(table([[p["tau"], p["n"], p["alpha"], p["ci_low"], p["dev"], p["ci_high"]]
                            for p in pts],
                           ["tau (s)", "n", "alpha", "min (68 %)", "value", "max (68 %)"]))
    png = _plot_png(r)
    if png:
        parts.append(f'<h2>Sigma-tau plot</h2><img alt="sigma-tau plot" '
                     f'src="data:image/png;base64,{png}">')
    if r["mask"]:
        m = r["mask"]
        parts.append(f"<h2>Mask {e(m['name'])}: {'PASS' if m['pass'] else 'FAIL'}</h2>")
        parts.append(table([[c["statistic"], c["points_checked"],
                             ", ".join(f"{t:g}" for t in c["violations"]) or "none"]
                            for c in m["checks"]], ["statistic", "points checked",
                                                    "violations at tau (s)"]))
    c = r["chain"]
    parts.append("<h2>Record integrity</h2>")
    parts.append(f"<p>Hash chain {'intact' if c['ok'] else 'BROKEN: ' + e(c['problem'] or '')}"
                 f"; head seq {c['head_seq']} <code>{e(c['head'])}</code>; verified by "
                 f"checkpoint up to seq {c['verified_seq']}, unverified tail "
                 f"{c['unverified_tail']} samples.</p>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #999;"
             "padding:2px 6px;text-align:right}img{max-width:100%}"
             "@media print{h2{page-break-after:avoid}table,img{page-break-inside:avoid}}")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>timemon report "
            f"{e(r['source'])}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
