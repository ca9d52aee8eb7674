"""Read one source's samples from the store as a regular phase series, and write it.

Gaps: the samples are placed on a grid of step tau0 (the median interval
between samples); an interval of about k·tau0 between two samples (rounded to
whole steps) leaves k − 1 grid points without a sample: gaps, written as ``nan``
(the value Stable32-style readers and ``timemon analyze`` take as missing).
A second sample in the same grid slot is dropped (counted in ``duplicates``).
Phase is the stored offset (local − reference, seconds).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt


class ExportError(Exception):
    """Bad period, unknown source, or too few samples; str() is the one-line message."""


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ns: int | None = None) -> int:
    """ISO 8601 (naive means UTC), ``now``, or relative like ``-1h``, ``-30m``, ``-2d``."""
    now = time.clock_gettime_ns(time.CLOCK_REALTIME) if now_ns is None else now_ns
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - int(float(m.group(1)) * _UNIT[m.group(2)] * 1e9)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{text!r}: not a time; use ISO 8601 (2026-01-31T12:00:00Z), "
                          "'now', or relative like -1h, -30m, -2d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


@dataclass
class Series:
    source: str
    kind: str
    t_ns: npt.NDArray[np.int64]  # the samples as stored, in time order
    offset: npt.NDArray[np.float64]
    delay: npt.NDArray[np.float64]  # NaN where the protocol has none
    start_ns: int  # the requested period
    end_ns: int
    tau0_ns: int = 0
    grid: npt.NDArray[np.float64] | None = None  # phase on the grid, NaN = gap
    grid_t_ns: npt.NDArray[np.int64] | None = None  # sample time, or grid time for a gap
    duplicates: int = 0

    @property
    def rate(self) -> float:
        return 1e9 / self.tau0_ns

    @property
    def gaps(self) -> int:
        return int(np.isnan(self.grid).sum()) if self.grid is not None else 0


def find_source(db: sqlite3.Connection, name: str) -> tuple[int, str]:
    rows = db.execute("SELECT id, kind FROM sources WHERE name = ?", (name,)).fetchall()
    if not rows:
        known = ", ".join(r[0] for r in db.execute("SELECT name FROM sources ORDER BY name"))
        raise ExportError(f"no source {name!r} in the store (sources: {known or 'none'})")
    if len(rows) > 1:
        raise ExportError(f"source name {name!r} is used by several kinds")
    return rows[0][0], rows[0][1]


def load_series(db: sqlite3.Connection, name: str, start_ns: int, end_ns: int) -> Series:
    if end_ns <= start_ns:
        raise ExportError("--to must be after --from")
    sid, kind = find_source(db, name)
    rows = db.execute("SELECT t_ns, offset, delay FROM samples WHERE source_id = ? AND "
                      "t_ns >= ? AND t_ns <= ? ORDER BY t_ns, id", (sid, start_ns, end_ns)
                      ).fetchall()
    if len(rows) < 3:
        raise ExportError(f"source {name!r}: {len(rows)} samples in the period; need at least 3")
    t = np.array([r[0] for r in rows], dtype=np.int64)
    s = Series(name, kind, t, np.array([r[1] for r in rows], dtype=np.float64),
               np.array([math.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
               start_ns, end_ns)
    _grid(s)
    return s


def _grid(s: Series) -> None:
    dt = np.diff(s.t_ns)
    tau0 = int(np.median(dt[dt > 0])) if np.any(dt > 0) else 0
    if tau0 <= 0:
        raise ExportError(f"source {s.source!r}: samples do not advance in time")
    # Slots from consecutive intervals, not from (t - t0) / tau0: a poll schedule that
    # slips a little each time would otherwise drift off the grid over a long series.
    steps = np.rint(dt / tau0).astype(np.int64)
    first = np.ones(s.t_ns.size, dtype=bool)
    first[1:] = steps > 0  # a second sample in the same slot is dropped
    slot = np.concatenate(([0], np.cumsum(steps)))
    n = int(slot[-1]) + 1
    grid = np.full(n, np.nan)
    # A gap row gets the time of the sample before it plus whole steps of tau0.
    prev = np.maximum.accumulate(np.where(np.isin(np.arange(n), slot), np.arange(n), 0))
    times = np.zeros(n, dtype=np.int64)
    times[slot[first]] = s.t_ns[first]
    times = times[prev] + (np.arange(n) - prev) * tau0
    grid[slot[first]] = s.offset[first]
    s.tau0_ns, s.grid, s.grid_t_ns, s.duplicates = tau0, grid, times, int((~first).sum())


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v))


def header(s: Series) -> list[str]:
    iso = datetime.fromtimestamp(s.t_ns[0] / 1e9, UTC).isoformat()
    return [
        f"# timemon export: source {s.source} ({s.kind}), phase = offset local - reference (s)",
        f"# start {iso} ({s.t_ns[0]} ns), tau0 {s.tau0_ns / 1e9:g} s, {s.grid.size} points, "
        f"{s.gaps} gaps written as nan, {s.duplicates} duplicate samples dropped",
    ]


def write(s: Series, fmt: str, out: str | None) -> str:
    """The file's text (stable32: one value a line; csv: time,value with Unix seconds)."""
    assert s.grid is not None and s.grid_t_ns is not None
    lines = header(s)
    if fmt == "csv":
        lines.append("# time_unix_s,phase_s")
        lines += [f"{t // 10**9}.{t % 10**9:09d},{_fmt(v)}" for t, v in
                  zip(s.grid_t_ns.tolist(), s.grid.tolist(), strict=True)]
    else:
        lines += [_fmt(v) for v in s.grid.tolist()]
    text = "\n".join(lines) + "\n"
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    return text
