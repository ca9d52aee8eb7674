"""Durations as written in config files and on the command line."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"16s"``, ``"2m"``, ``"30d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 16 or \"16s\", not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (write 16, \"16s\", \"2m\", \"1h\")")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 16 or \"16s\", got {type(value).__name__}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError("a duration must be positive and finite")
    return seconds
