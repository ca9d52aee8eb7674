"""Read a stability data file for ``timemon analyze``.

Accepted: one column (values; Stable32's format) or two columns (time, value),
separated by whitespace or commas; ``#`` starts a comment; blank lines are
skipped. A value of ``nan`` marks a gap. Errors carry the line number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._prepare import FloatArray


class DataFileError(ValueError):
    """A data file cannot be used; ``str()`` names the file and line."""


@dataclass
class DataFile:
    values: FloatArray
    times: FloatArray | None  # None for one-column files


def _fields(line: str) -> list[str]:
    return line.replace(",", " ").split()


def load(path: str | Path) -> DataFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    times: list[float] = []
    values: list[float] = []
    ncols: int | None = None
    first_line = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = _fields(line)
        if ncols is None:
            ncols, first_line = len(fields), lineno
            if ncols not in (1, 2):
                raise DataFileError(
                    f"{p}:{lineno}: expected 1 column (value) or 2 (time, value), got {ncols}"
                )
        elif len(fields) != ncols:
            raise DataFileError(
                f"{p}:{lineno}: expected {ncols} column(s) as on line {first_line}, "
                f"got {len(fields)}"
            )
        nums: list[float] = []
        for col, f in enumerate(fields, start=1):
            try:
                v = float(f)
            except ValueError:
                raise DataFileError(f"{p}:{lineno}: column {col}: not a number: {f!r}") from None
            if math.isinf(v):
                raise DataFileError(f"{p}:{lineno}: column {col}: infinite value {f!r}")
            nums.append(v)
        if ncols == 2:
            if math.isnan(nums[0]):
                raise DataFileError(f"{p}:{lineno}: column 1: time must be a number")
            times.append(nums[0])
        values.append(nums[-1])
    if not values:
        raise DataFileError(f"{p}:1: no data (empty file or only comments)")
    if len(values) < 2:
        raise DataFileError(f"{p}:{first_line}: only one value; need at least 2")
    t = np.asarray(times, dtype=np.float64) if ncols == 2 else None
    return DataFile(values=np.asarray(values, dtype=np.float64), times=t)


def infer_rate(times: FloatArray, path: str | Path) -> float:
    """Sample rate from the median time step (robust to a few missing rows)."""
    dt = np.diff(times)
    if np.any(dt <= 0):
        i = int(np.argmax(dt <= 0))
        raise DataFileError(
            f"{path}: time column is not increasing (data row {i + 2}); give --rate instead"
        )
    step = float(np.median(dt))
    return 1.0 / step
