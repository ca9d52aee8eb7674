"""``timemon status``: every source of the running agent in one table, like
``chronyc sources -v`` across NTP, PTP, GNSS, chrony and the kernel.

It reads the agent's own HTTP endpoint (``/status.json`` for the list of sources and
their states, ``/metrics`` for the numbers), so it needs no privilege.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

import click
from prometheus_client.parser import text_string_to_metric_families

from timemon.config import DEFAULT_PORT

EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

LEGEND = """\
  .- state: up / down (PTP: port state, kernel: sync / unsync)
  |  offset: local - reference (+ local ahead); delay/acc: round trip, path delay,
  |  or (GNSS) receiver time accuracy; freq: frequency offset (1e-6 = 1 ppm);
  |  ADEV: Allan deviation at the shortest tau; age: since the last sample;
  |  flags: F falseticker, M mask violated (mask:statistic), E last error
"""


class AgentUnreachable(Exception):
    pass


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon: {message}", err=True)
    sys.exit(code)


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise AgentUnreachable(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AgentUnreachable(f"cannot reach the agent at {url}: {reason}") from exc


def _metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def read_status(base: str, timeout: float = 5.0) -> dict[str, Any]:
    """One row per source: the agent's /status.json merged with its /metrics."""
    base = base.rstrip("/")
    try:
        doc = json.loads(_get(f"{base}/status.json", timeout))
        metrics = _metrics(_get(f"{base}/metrics", timeout).decode())
    except ValueError as exc:  # not JSON / not the exposition format: not a timemon agent
        raise AgentUnreachable(f"{base} did not answer like a timemon agent: {exc}") from exc

    def value(name: str, source: str, kind: str, **labels: str) -> float | None:
        for sample_labels, v in metrics.get(name, ()):
            if (sample_labels.get("source") == source and sample_labels.get("kind") == kind
                    and all(sample_labels.get(k) == x for k, x in labels.items())):
                return v
        return None

    now = time.time()
    rows = []
    for st in doc.get("sources", []):
        name, kind = str(st.get("source")), str(st.get("kind"))
        up = bool(st.get("up"))
        state = "up" if up else "down"
        if kind == "ptp" and st.get("port_state"):
            state = str(st["port_state"])
        if kind == "kernel":
            sync = metrics.get("timemon_kernel_sync_status")
            state = ("sync" if sync[0][1] == 1 else "unsync") if sync else state
        adevs = sorted(((float(lb["tau"]), v) for lb, v in metrics.get(
            "timemon_allan_deviation", ()) if lb.get("source") == name
            and lb.get("kind") == kind), key=lambda p: p[0])
        accuracy = value("timemon_gnss_time_accuracy_seconds", name, kind)
        last = st.get("last_sample_timestamp_seconds")
        masks = [f"{lb['mask']}:{lb['statistic']}" for lb, v in metrics.get(
            "timemon_mask_violation", ()) if lb.get("source") == name and v == 1]
        # The kernel is not a reference: its adjtimex "offset" is a correction (DESIGN.md).
        reference = kind != "kernel"
        rows.append({
            "source": name, "kind": kind, "up": up, "state": state,
            "offset_seconds": st.get("offset_seconds") if reference else None,
            "delay_seconds": st.get("delay_seconds") if reference else None,
            "time_accuracy_seconds": accuracy,
            "jitter_seconds": st.get("jitter_seconds") if reference else None,
            "frequency_offset_ratio": value("timemon_frequency_offset_ratio", name, kind),
            "allan_deviation": adevs[0][1] if adevs else None,
            "allan_deviation_tau_seconds": adevs[0][0] if adevs else None,
            "last_sample_age_seconds": (now - last) if last else None,
            "falseticker": value("timemon_falseticker", name, kind) == 1,
            "mask_violations": masks,
            "last_error": st.get("last_error") or "",
        })
    return {"url": base, "version": doc.get("version"), "sources": rows}


def _seconds(v: float | None, signed: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    sign = "+" if signed and v >= 0 else ("-" if v < 0 else "")
    mag = abs(v)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if mag >= scale:
            return f"{sign}{mag / scale:.3f}{unit}"
    return f"{sign}{mag / 1e-9:.1f}ns"


def _age(v: float | None) -> str:
    if v is None:
        return "never"
    if v < 120:
        return f"{v:.0f}s"
    if v < 7200:
        return f"{v / 60:.0f}m"
    return f"{v / 3600:.0f}h"


def _sci(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.2e}"


def render_table(status: dict[str, Any], verbose_legend: bool = True) -> str:
    header = (f"{'source':<16} {'kind':<7} {'state':<12} {'offset':>11} {'delay/acc':>11} "
              f"{'jitter':>10} {'freq':>10} {'ADEV(tau)':>14} {'age':>6}  flags")
    lines = [f"timemon {status.get('version') or '?'} at {status['url']}"]
    if verbose_legend:
        lines.append(LEGEND.rstrip("\n"))
    lines += [header, "=" * len(header)]
    for r in status["sources"]:
        acc = r["time_accuracy_seconds"]
        delay = _seconds(acc, signed=False) if acc is not None else _seconds(
            r["delay_seconds"], signed=False)
        adev = "-"
        if r["allan_deviation"] is not None:
            adev = f"{r['allan_deviation']:.2e}({r['allan_deviation_tau_seconds']:g})"
        flags = []
        if r["falseticker"]:
            flags.append("F")
        if r["mask_violations"]:
            flags.append("M " + ",".join(r["mask_violations"]))
        if r["last_error"] and not r["up"]:
            flags.append(f"E {r['last_error']}")
        lines.append(
            f"{r['source'][:16]:<16} {r['kind'][:7]:<7} {r['state'][:12]:<12} "
            f"{_seconds(r['offset_seconds']):>11} {delay:>11} "
            f"{_seconds(r['jitter_seconds'], signed=False):>10} "
            f"{_sci(r['frequency_offset_ratio']):>10} {adev:>14} "
            f"{_age(r['last_sample_age_seconds']):>6}  {' '.join(flags)}".rstrip())
    if not status["sources"]:
        lines.append("(no sources)")
    return "\n".join(lines)


@click.command("status")
@click.option("--url", default=DEFAULT_URL, show_default=True,
              help="The agent's HTTP endpoint (its [agent] listen address).")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600),
              help="Seconds between refreshes with --watch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (one per refresh "
              "with --watch).")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds to wait for the agent.")
def status(url: str, watch: bool, interval: float, as_json: bool, timeout: float) -> None:
    """Every source of the running agent in one table (like chronyc sources -v).

    Reads the agent's /status.json and /metrics, so it works unprivileged. Exits 1
    when the agent cannot be reached.
    """
    if not url.startswith(("http://", "https://")):
        _fail(f"--url must start with http:// or https://, got {url!r}", EXIT_USAGE)
    first = True
    try:
        while True:
            try:
                result = read_status(url, timeout)
            except AgentUnreachable as exc:
                _fail(str(exc), EXIT_FAILED)
            if as_json:
                click.echo(json.dumps(result))
            else:
                table = render_table(result)
                if watch:
                    # Home the cursor and clear: the table refreshes in place.
                    click.echo("\x1b[H\x1b[2J" + table + f"\n(every {interval:g} s, Ctrl-C "
                               "stops)", nl=True)
                else:
                    click.echo(table)
            if not watch:
                return
            first = False
            time.sleep(interval)
    except KeyboardInterrupt:
        if not first and not as_json:
            click.echo("")
        return
