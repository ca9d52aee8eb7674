"""The gpsd client path: gpsd's JSON reports (gpsd_json(5)) to epochs and time offsets.

After ``?WATCH={"enable":true,"json":true,"pps":true}`` gpsd sends one JSON
object per line.  This module turns them into the same ``Epoch`` the serial path
produces, and into offsets:

* ``TPV``: ``time`` (the epoch's UTC, ISO 8601), ``mode``, ``status``
  (omitted by gpsd for a plain fix), ``leapseconds``.  gpsd sends several TPV for
  one epoch as more of it arrives; the last one for a ``time`` is its final word.
* ``SKY``: ``satellites`` (each with ``used`` and ``ss``, C/N0 in dB-Hz),
  ``pdop``, ``tdop`` (and ``uSat``/``nSat`` in newer gpsd).
* ``PPS`` / ``TOFF``: ``real_sec/real_nsec`` (the receiver's UTC) and
  ``clock_sec/clock_nsec`` (the local clock at the pulse / at the sentence's
  arrival): offset = clock − real, quality "pps" for PPS, "serial" for TOFF.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from timemon.probes.gnss_decode import Epoch
from timemon.probes.gnss_stream import GnssStreamError

NS = 1_000_000_000
WATCH = b'?WATCH={"enable":true,"json":true,"pps":true};\n'
MAX_LINE = 64 * 1024  # gpsd's longest reports (SKY with many satellites) are a few KiB


class GpsdProtocolError(GnssStreamError):
    reason = "gpsd_protocol"


@dataclass(frozen=True, slots=True)
class TimeOffset:
    """A PPS or TOFF report: local clock − receiver UTC."""

    quality: str  # "pps" or "serial"
    real_ns: int
    clock_ns: int

    @property
    def offset_ns(self) -> int:
        return self.clock_ns - self.real_ns


def parse_iso_ns(text: str) -> int | None:
    """gpsd's ISO 8601 UTC (``2022-03-09T15:01:19.000Z``) to Unix ns, None if malformed."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    body = text[:-1]
    main, _, frac = body.partition(".")
    try:
        base = datetime.fromisoformat(main + "+00:00")
    except ValueError:
        return None
    if frac and not frac.isdigit():
        return None
    nsec = int((frac + "000000000")[:9]) if frac else 0
    return int(base.timestamp()) * NS + nsec


def parse_report(line: bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GpsdProtocolError(f"not JSON: {line[:60]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("class"), str):
        raise GpsdProtocolError(f"not a gpsd report: {line[:60]!r}")
    return data


def _time_offset(report: dict[str, Any], quality: str) -> TimeOffset | None:
    try:
        real = int(report["real_sec"]) * NS + int(report["real_nsec"])
        clock = int(report["clock_sec"]) * NS + int(report["clock_nsec"])
    except (KeyError, TypeError, ValueError, OverflowError):  # Overflow: 1e999 parses as inf
        return None
    return TimeOffset(quality, real, clock)


class GpsdEpochs:
    """Reports in, epochs and time offsets out; an epoch closes when a TPV with a new
    ``time`` arrives or when the caller flushes on a quiet line."""

    def __init__(self) -> None:
        self._tpv: dict[str, Any] | None = None
        self._tpv_arrival: int | None = None
        self._sky: dict[str, Any] = {}
        self.version: str | None = None
        self.devices: list[str] = []

    def feed(self, report: dict[str, Any], arrival_ns: int) -> tuple[list[Epoch], TimeOffset | None]:
        cls = report["class"]
        epochs: list[Epoch] = []
        offset: TimeOffset | None = None
        if cls == "TPV":
            time_text = report.get("time")
            if self._tpv is not None and time_text != self._tpv.get("time"):
                epoch = self.flush()
                if epoch is not None:
                    epochs.append(epoch)
            if self._tpv is None:
                self._tpv_arrival = arrival_ns
            self._tpv = report
        elif cls == "SKY":
            self._sky = report
        elif cls == "PPS":
            offset = _time_offset(report, "pps")
        elif cls == "TOFF":
            offset = _time_offset(report, "serial")
        elif cls == "VERSION" and self.version is None:
            # The banner right after connecting; gpsd may relay later VERSION objects
            # found in a device's stream (the M8T capture holds one from its recording).
            self.version = str(report.get("release", ""))
        elif cls == "DEVICES":
            devices = report.get("devices")
            self.devices = [str(d.get("path", "")) for d in _as_list(devices)
                            if isinstance(d, dict)]
        elif cls == "ERROR":
            raise GpsdProtocolError(f"gpsd: {report.get('message', '')}")
        return epochs, offset

    def flush(self) -> Epoch | None:
        tpv, self._tpv = self._tpv, None
        if tpv is None:
            return None
        mode = _as_int(tpv.get("mode"), 0)
        status = _as_int(tpv.get("status"), 1 if mode >= 2 else 0)
        utc = tpv.get("time") if isinstance(tpv.get("time"), str) else None
        epoch = Epoch(utc=utc, utc_ns=parse_iso_ns(utc) if utc else None, utc_from="gpsd TPV",
                      arrival_ns=self._tpv_arrival, fix_mode=mode, fix_status=status,
                      leap_seconds=_as_int(tpv.get("leapseconds"), None))
        sky = self._sky
        sats = [s for s in _as_list(sky.get("satellites")) if isinstance(s, dict)]
        if sats:
            used = [s for s in sats if s.get("used")]
            epoch.satellites_visible = len(sats)
            epoch.satellites_used = len(used)
            cn0 = [float(s["ss"]) for s in used if isinstance(s.get("ss"), (int, float))]
            epoch.cn0_mean_dbhz = sum(cn0) / len(cn0) if cn0 else None
        elif "uSat" in sky:
            epoch.satellites_used = _as_int(sky.get("uSat"), None)
            epoch.satellites_visible = _as_int(sky.get("nSat"), None)
        for key in ("pdop", "tdop"):
            value = sky.get(key)
            if isinstance(value, (int, float)):
                setattr(epoch, key, float(value))
        return epoch


def _as_int(value: Any, default: int | None) -> Any:
    """An integer field, or ``default`` for another type or a non-finite number (JSON's
    1e999 parses as inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value) if math.isfinite(value) else default


def _as_list(value: Any) -> list[Any]:
    """A JSON array field, or empty when gpsd (or anything posing as it) sent another type."""
    return value if isinstance(value, list) else []
