"""From checked NMEA / UBX frames to one state per navigation epoch.

Fix mode and status are numbered as gpsd numbers them (gpsd_json(5), TPV):
``mode`` 0 unknown, 1 no fix, 2 2D, 3 3D; ``status`` 0 unknown/none, 1 GPS,
2 DGPS, 3 RTK fixed, 4 RTK float, 5 dead reckoning, 6 GNSS+DR, 7 time only
(surveyed position), 8 simulated, 9 P(Y).  A time-only fix is mode 3, status 7.

An epoch is the burst of frames a receiver sends for one navigation solution.
Its boundary is seen when a frame carries a different epoch time (NMEA time of
day, UBX iTOW converted with the learned GPS−UTC offset), or at UBX NAV-EOE; the
caller flushes the last one when the line goes quiet.  Within an epoch several
messages may say the same thing; the most specific wins (a UBX solution over
GSA over GGA over RMC), whatever the order.  Receiver health (antenna, jamming,
survey-in, qErr) is state that persists across epochs.

UBX field meanings and scalings: u-blox M8 / F9 interface descriptions, section
numbers given per message below as "UBX-CLASS-ID".
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from timemon.probes.gnss_stream import Frame, GnssStreamError

DAY_MS = 86_400_000
DEFAULT_LEAP_SECONDS = 18

# gpsd status numbers (gps.h STATUS_*)
STATUS_UNK, STATUS_GPS, STATUS_DGPS, STATUS_RTK_FIX, STATUS_RTK_FLT = 0, 1, 2, 3, 4
STATUS_DR, STATUS_GNSSDR, STATUS_TIME, STATUS_SIM, STATUS_PY = 5, 6, 7, 8, 9

# u-blox antenna supervisor state (UBX-MON-HW aStatus, UBX-MON-RF antStatus)
ANTENNA_STATES = {0: "init", 1: "dontknow", 2: "ok", 3: "short", 4: "open"}
_ANTENNA_TEXT = {v.upper(): k for k, v in ANTENNA_STATES.items()}

# NMEA GGA quality indicator -> gpsd status
_GGA_STATUS = {0: STATUS_UNK, 1: STATUS_GPS, 2: STATUS_DGPS, 3: STATUS_PY, 4: STATUS_RTK_FIX,
               5: STATUS_RTK_FLT, 6: STATUS_DR, 7: STATUS_TIME, 8: STATUS_SIM}
# NMEA 2.3+ mode indicator (RMC/GLL/GNS) -> gpsd status
_MODE_CHAR_STATUS = {"A": STATUS_GPS, "D": STATUS_DGPS, "E": STATUS_DR, "F": STATUS_RTK_FLT,
                     "R": STATUS_RTK_FIX, "M": STATUS_TIME, "S": STATUS_SIM, "P": STATUS_PY}
# NMEA talker -> system id of NMEA 4.10 GSA (1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou, 5 QZSS,
# 6 NavIC)
_TALKER_SYSTEM = {"GP": 1, "GL": 2, "GA": 3, "GB": 4, "BD": 4, "GQ": 5, "GI": 6}

# Rank of the messages that may set a quantity: higher wins within an epoch.
R_UBX_TIMEUTC, R_UBX, R_ZDA, R_RMC, R_NMEA = 5, 4, 3, 2, 1


class GnssDecodeError(GnssStreamError):
    """A checked frame whose fields do not make sense (a message version we do not know)."""

    def __init__(self, detail: str, raw: bytes = b"", reason: str = "parse_error") -> None:
        super().__init__(detail, raw)
        self.reason = reason


@dataclass
class Epoch:
    """The receiver's state at the end of one navigation epoch (JSON keys mirror metrics)."""

    utc: str | None = None
    utc_ns: int | None = None
    utc_from: str | None = None
    arrival_ns: int | None = None
    fix_mode: int = 0
    fix_status: int = 0
    satellites_used: int | None = None
    satellites_visible: int | None = None
    pdop: float | None = None
    tdop: float | None = None
    leap_seconds: int | None = None
    time_accuracy_seconds: float | None = None
    clock_bias_seconds: float | None = None
    clock_drift_ratio: float | None = None
    qerr_seconds: float | None = None
    antenna_status: int | None = None
    jamming_indicator: int | None = None
    jamming_state: int | None = None
    survey_in_active: bool | None = None
    survey_in_valid: bool | None = None
    survey_in_mean_accuracy_meters: float | None = None
    survey_in_duration_seconds: float | None = None
    cn0_mean_dbhz: float | None = None
    itow_ms: int | None = None
    messages: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("messages")
        if self.antenna_status is not None:
            data["antenna_status_text"] = ANTENNA_STATES.get(self.antenna_status, "unknown")
        return data


@dataclass
class _Ranked:
    value: Any = None
    rank: int = 0

    def offer(self, value: Any, rank: int) -> None:
        if value is not None and rank >= self.rank:
            self.value, self.rank = value, rank


def _num(value: Any) -> float | None:
    """A library field as a float, or None for an empty NMEA field."""
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _field(raw: bytes, index: int) -> str:
    """Field ``index`` of a raw sentence (0 is the address), without the checksum."""
    body = raw[1:raw.rfind(b"*")] if b"*" in raw else raw[1:]
    parts = body.decode("ascii", "replace").split(",")
    return parts[index] if index < len(parts) else ""


def _tod_from_text(text: str) -> tuple[int, str] | None:
    """NMEA hhmmss[.sss] to (ms of day, "hh:mm:ss[.sss]" as the receiver wrote it)."""
    if len(text) < 6 or not text[:6].isdigit():
        return None
    hh, mm, ss = int(text[0:2]), int(text[2:4]), int(text[4:6])
    frac = text[6:]
    if frac and (frac[0] != "." or not frac[1:].isdigit()):
        return None
    if hh > 23 or mm > 59 or ss > 60:
        return None
    ms = round(float("0" + frac) * 1000) if len(frac) > 1 else 0
    return (hh * 3600 + mm * 60 + ss) * 1000 + ms, f"{hh:02d}:{mm:02d}:{ss:02d}{frac}"


def _date_ns(date: dt.date) -> int:
    return calendar.timegm(date.timetuple()[:3] + (0, 0, 0)) * 1_000_000_000


def iso_from_ns(utc_ns: int) -> str:
    sec, nsec = divmod(utc_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nsec:09d}Z"


def _ubx_utc_ns(year: int, month: int, day: int, hour: int, minute: int, sec: int,
                nano: int) -> int | None:
    try:
        base = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
        dt.date(year, month, day)  # timegm accepts 31 February; reject it here
    except (ValueError, OverflowError):
        return None
    return base * 1_000_000_000 + nano


def _ubx_fix(fix_type: int, fix_ok: int, diff: int, carr: int) -> tuple[int, int]:
    """UBX gpsFix/fixType (NAV-PVT, NAV-STATUS, NAV-SOL) to gpsd (mode, status)."""
    if not fix_ok or fix_type == 0 or fix_type > 5:
        return 1, STATUS_UNK
    mode, status = {1: (2, STATUS_DR), 2: (2, STATUS_GPS), 3: (3, STATUS_GPS),
                    4: (3, STATUS_GNSSDR), 5: (3, STATUS_TIME)}[fix_type]
    if status == STATUS_GPS:
        if carr == 2:
            status = STATUS_RTK_FIX
        elif carr == 1:
            status = STATUS_RTK_FLT
        elif diff:
            status = STATUS_DGPS
    return mode, status


class _EpochAcc:
    """What the frames of the epoch being received said so far."""

    def __init__(self) -> None:
        self.tod_ms: int | None = None
        self.itow_ms: int | None = None
        self.arrival_ns: int | None = None
        self.utc = _Ranked()  # (utc_ns, text, from)
        self.nmea_tod: tuple[int, str] | None = None  # NMEA time without a date yet
        self.nmea_date: dt.date | None = None
        self.mode = _Ranked()
        self.status = _Ranked()
        self.used = _Ranked()
        self.visible = _Ranked()
        self.cn0 = _Ranked()
        self.pdop = _Ranked()
        self.tdop = _Ranked()
        self.tacc = _Ranked()
        self.gsa_used: set[tuple[int, int]] = set()
        self.gsv_cn0: dict[tuple[int, int], float | None] = {}
        self.messages: list[str] = []

    @property
    def keyed(self) -> bool:
        return self.tod_ms is not None or self.itow_ms is not None


class EpochDecoder:
    """Feed frames in arrival order; get each epoch when the next begins (or at ``flush``)."""

    def __init__(self) -> None:
        self._acc = _EpochAcc()
        # GPS−UTC in ms modulo a day, to put UBX iTOW and NMEA times of one epoch
        # together.  Until a message tells it, 18 s (since 2017-01-01) is the guess:
        # a wrong guess only splits epochs until NAV-PVT/TIMEUTC/TIMEGPS corrects it.
        self._itow_minus_tod: int = DEFAULT_LEAP_SECONDS * 1000
        self._last_date: dt.date | None = None
        self._last_date_tod: int | None = None
        # State that persists from epoch to epoch.
        self.fix_mode = 0
        self.fix_status = STATUS_UNK
        self.satellites_used: int | None = None
        self.satellites_visible: int | None = None
        self.cn0_mean: float | None = None
        self.pdop: float | None = None
        self.tdop: float | None = None
        self.leap_seconds: int | None = None
        self.time_accuracy: float | None = None
        self.clock_bias: float | None = None
        self.clock_drift: float | None = None
        self.qerr: float | None = None
        self.antenna_status: int | None = None
        self.jamming_indicator: int | None = None
        self.jamming_state: int | None = None
        self.survey_active: bool | None = None
        self.survey_valid: bool | None = None
        self.survey_accuracy: float | None = None
        self.survey_duration: float | None = None
        # UBX-TIM-TP: time of the next pulse (for PPS pairing), in its time base.
        self.next_pulse: tuple[int, int, int] | None = None  # (week, towMS, timeBase)

    # -- epoch boundaries ---------------------------------------------------------

    def feed(self, frame: Frame) -> list[Epoch]:
        """Apply one frame; return the epochs it closed.  Raises only ``GnssDecodeError``
        (after which the decoder stays usable)."""
        out: list[Epoch] = []
        msg = frame.message
        identity = frame.identity
        itow = tod = None
        if frame.protocol == "ubx":
            if identity.startswith("NAV-") and hasattr(msg, "iTOW"):
                itow = int(msg.iTOW)
                tod = (itow - self._itow_minus_tod) % DAY_MS
        else:
            tod = self._nmea_tod(frame)
        if self._is_new_epoch(itow, tod):
            epoch = self._close()
            if epoch is not None:
                out.append(epoch)
        acc = self._acc
        if itow is not None or tod is not None:
            if acc.arrival_ns is None:
                acc.arrival_ns = frame.t_ns
            if acc.itow_ms is None and itow is not None:
                acc.itow_ms = itow
            if acc.tod_ms is None and tod is not None:
                acc.tod_ms = tod
        acc.messages.append(identity)
        if frame.protocol == "ubx":
            _check_length(identity, frame.raw)
        try:
            if frame.protocol == "ubx":
                self._ubx(identity, msg)
            else:
                self._nmea(frame, msg)
        except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
            raise GnssDecodeError(f"{identity}: {type(exc).__name__}: {exc}", frame.raw) from exc
        if identity == "NAV-EOE":
            epoch = self._close()
            if epoch is not None:
                out.append(epoch)
        return out

    def flush(self) -> Epoch | None:
        """The line went quiet (or ended): close the epoch being received."""
        return self._close()

    def _is_new_epoch(self, itow: int | None, tod: int | None) -> bool:
        acc = self._acc
        if tod is not None and acc.tod_ms is not None:
            return tod != acc.tod_ms
        if itow is not None and acc.itow_ms is not None:
            return itow != acc.itow_ms
        return False

    @staticmethod
    def _nmea_tod(frame: Frame) -> int | None:
        msg_id = frame.identity[2:]
        index = {"RMC": 1, "GGA": 1, "GNS": 1, "ZDA": 1, "GST": 1, "GBS": 1, "GRS": 1,
                 "GLL": 5}.get(msg_id)
        if index is None:
            return None
        parsed = _tod_from_text(_field(frame.raw, index))
        return parsed[0] if parsed else None

    def _learn_itow(self, itow: int, tod_ms: int) -> None:
        delta = (itow - tod_ms) % DAY_MS
        self._itow_minus_tod = (round(delta / 1000) * 1000) % DAY_MS

    def _close(self) -> Epoch | None:
        acc = self._acc
        self._acc = _EpochAcc()
        if not acc.keyed:
            # Configuration chatter (MON-VER, ACK) or health only: no epoch, but its
            # effects on the persistent state stay.
            return None
        if acc.utc.value is None and acc.nmea_tod is not None:
            date = acc.nmea_date or self._date_for(acc.nmea_tod[0])
            if date is not None:
                ms, text = acc.nmea_tod
                acc.utc.offer((_date_ns(date) + ms * 1_000_000,
                               f"{date.isoformat()}T{text}Z", "nmea"), R_NMEA)
        if acc.nmea_date is not None and acc.nmea_tod is not None:
            self._last_date, self._last_date_tod = acc.nmea_date, acc.nmea_tod[0]
        if acc.mode.value is not None:
            self.fix_mode = acc.mode.value
        if acc.status.value is not None:
            self.fix_status = acc.status.value
        if acc.gsa_used:
            acc.used.offer(len(acc.gsa_used), R_NMEA + 1)
            cn0s = [acc.gsv_cn0.get(sv) for sv in acc.gsa_used]
            known = [c for c in cn0s if c]
            if known:
                acc.cn0.offer(sum(known) / len(known), R_NMEA)
        if acc.gsv_cn0:
            acc.visible.offer(len(acc.gsv_cn0), R_NMEA)
        for name, ranked in (("satellites_used", acc.used), ("satellites_visible", acc.visible),
                             ("cn0_mean", acc.cn0), ("pdop", acc.pdop), ("tdop", acc.tdop),
                             ("time_accuracy", acc.tacc)):
            if ranked.value is not None:
                setattr(self, name, ranked.value)
        utc_ns, text, source = acc.utc.value if acc.utc.value else (None, None, None)
        return Epoch(
            utc=text, utc_ns=utc_ns, utc_from=source, arrival_ns=acc.arrival_ns,
            fix_mode=self.fix_mode, fix_status=self.fix_status,
            satellites_used=self.satellites_used, satellites_visible=self.satellites_visible,
            pdop=self.pdop, tdop=self.tdop, leap_seconds=self.leap_seconds,
            time_accuracy_seconds=self.time_accuracy, clock_bias_seconds=self.clock_bias,
            clock_drift_ratio=self.clock_drift, qerr_seconds=self.qerr,
            antenna_status=self.antenna_status, jamming_indicator=self.jamming_indicator,
            jamming_state=self.jamming_state, survey_in_active=self.survey_active,
            survey_in_valid=self.survey_valid,
            survey_in_mean_accuracy_meters=self.survey_accuracy,
            survey_in_duration_seconds=self.survey_duration, cn0_mean_dbhz=self.cn0_mean,
            itow_ms=acc.itow_ms, messages=acc.messages)

    def _date_for(self, tod_ms: int) -> dt.date | None:
        """The date of a GGA/GLL time from the last RMC/ZDA date, across midnight."""
        if self._last_date is None or self._last_date_tod is None:
            return None
        if tod_ms < self._last_date_tod - DAY_MS // 2:
            return self._last_date + dt.timedelta(days=1)
        return self._last_date

    # -- NMEA 0183 ----------------------------------------------------------------

    def _nmea(self, frame: Frame, msg: Any) -> None:
        acc = self._acc
        if msg is None or frame.identity.startswith("P"):
            return
        msg_id, talker = frame.identity[2:], frame.identity[:2]
        raw = frame.raw
        if msg_id in ("RMC", "GGA", "GNS", "GLL", "ZDA"):
            parsed = _tod_from_text(_field(raw, 5 if msg_id == "GLL" else 1))
            if parsed is not None and acc.nmea_tod is None:
                acc.nmea_tod = parsed
        if msg_id == "RMC":
            date_text = _field(raw, 9)
            if len(date_text) == 6 and date_text.isdigit():
                with contextlib.suppress(ValueError):
                    acc.nmea_date = dt.date(2000 + int(date_text[4:6]), int(date_text[2:4]),
                                            int(date_text[0:2]))
            status = getattr(msg, "status", "")
            pos_mode = str(getattr(msg, "posMode", "") or "")
            if status == "V" or pos_mode == "N":
                acc.mode.offer(1, R_NMEA)
                acc.status.offer(STATUS_UNK, R_NMEA)
            elif status == "A":
                acc.mode.offer(max(2, self._acc_mode_floor()), R_NMEA)
                acc.status.offer(_MODE_CHAR_STATUS.get(pos_mode, STATUS_GPS), R_NMEA)
        elif msg_id == "ZDA":
            day, month, year = _int(msg.day), _int(msg.month), _int(msg.year)
            if day and month and year:
                with contextlib.suppress(ValueError):
                    acc.nmea_date = dt.date(year, month, day)
        elif msg_id == "GGA":
            quality = _int(getattr(msg, "quality", None))
            if quality is not None:
                if quality == 0:
                    acc.mode.offer(1, R_NMEA + 1)
                    acc.status.offer(STATUS_UNK, R_NMEA + 1)
                else:
                    has_alt = _num(getattr(msg, "alt", None)) is not None
                    acc.mode.offer(3 if has_alt else 2, R_NMEA + 1)
                    acc.status.offer(_GGA_STATUS.get(quality, STATUS_GPS), R_NMEA + 1)
            acc.used.offer(_int(getattr(msg, "numSV", None)), R_NMEA)
        elif msg_id == "GNS":
            pos_mode = str(getattr(msg, "posMode", "") or "")
            if pos_mode:
                if all(c == "N" for c in pos_mode):
                    acc.mode.offer(1, R_NMEA + 1)
                else:
                    has_alt = _num(getattr(msg, "alt", None)) is not None
                    acc.mode.offer(3 if has_alt else 2, R_NMEA + 1)
            acc.used.offer(_int(getattr(msg, "numSV", None)), R_NMEA)
        elif msg_id == "GSA":
            nav_mode = _int(getattr(msg, "navMode", None))
            if nav_mode in (1, 2, 3):
                acc.mode.offer(nav_mode, R_NMEA + 2)
            system = _int(getattr(msg, "systemId", None))
            for i in range(1, 13):
                svid = _int(getattr(msg, f"svid_{i:02d}", None))
                if svid:
                    acc.gsa_used.add(_sv_key(system, talker, svid))
            acc.pdop.offer(_num(getattr(msg, "PDOP", None)), R_NMEA)
        elif msg_id == "GSV":
            for i in range(1, 5):
                svid = _int(getattr(msg, f"svid_{i:02d}", None))
                if svid:
                    key = _sv_key(None, talker, svid)
                    if acc.gsv_cn0.get(key) is None:  # first signal listed: the primary one
                        acc.gsv_cn0[key] = _num(getattr(msg, f"cno_{i:02d}", None))
        elif msg_id == "TXT":
            text = str(getattr(msg, "text", ""))
            if text.upper().startswith("ANTSTATUS="):
                state = _ANTENNA_TEXT.get(text.split("=", 1)[1].strip().upper())
                if state is not None:
                    self.antenna_status = state

    def _acc_mode_floor(self) -> int:
        return self._acc.mode.value or 0

    # -- UBX ------------------------------------------------------------------------

    def _ubx(self, identity: str, m: Any) -> None:
        handler = _UBX_HANDLERS.get(identity)
        if handler is not None:
            handler(self, m)

    def _nav_pvt(self, m: Any) -> None:  # UBX-NAV-PVT (0x01 0x07)
        acc = self._acc
        mode, status = _ubx_fix(m.fixType, m.gnssFixOk, m.diffSoln, m.carrSoln)
        acc.mode.offer(mode, R_UBX)
        acc.status.offer(status, R_UBX)
        acc.used.offer(int(m.numSV), R_UBX - 1)
        acc.pdop.offer(float(m.pDOP), R_UBX - 1)
        if m.validDate and m.validTime:
            utc_ns = _ubx_utc_ns(m.year, m.month, m.day, m.hour, m.min, m.second, m.nano)
            if utc_ns is not None:
                acc.utc.offer((utc_ns, iso_from_ns(utc_ns), "NAV-PVT"), R_UBX)
                self._learn_itow(int(m.iTOW), (utc_ns // 1_000_000) % DAY_MS)
                acc.tacc.offer(m.tAcc * 1e-9, R_UBX - 1)

    def _nav_timeutc(self, m: Any) -> None:  # UBX-NAV-TIMEUTC (0x01 0x21)
        if not m.validUTC:
            return
        utc_ns = _ubx_utc_ns(m.year, m.month, m.day, m.hour, m.min, m.sec, m.nano)
        if utc_ns is None:
            return
        self._acc.utc.offer((utc_ns, iso_from_ns(utc_ns), "NAV-TIMEUTC"), R_UBX_TIMEUTC)
        self._acc.tacc.offer(m.tAcc * 1e-9, R_UBX)
        self._learn_itow(int(m.iTOW), (utc_ns // 1_000_000) % DAY_MS)

    def _nav_timegps(self, m: Any) -> None:  # UBX-NAV-TIMEGPS (0x01 0x20)
        if m.leapSValid:
            self.leap_seconds = int(m.leapS)
            self._itow_minus_tod = (int(m.leapS) * 1000) % DAY_MS
        if m.towValid:
            self._acc.tacc.offer(m.tAcc * 1e-9, R_UBX - 2)

    def _nav_timels(self, m: Any) -> None:  # UBX-NAV-TIMELS (0x01 0x26)
        if m.validCurrLs:
            self.leap_seconds = int(m.currLs)

    def _nav_clock(self, m: Any) -> None:  # UBX-NAV-CLOCK (0x01 0x22)
        self.clock_bias = m.clkB * 1e-9
        self.clock_drift = m.clkD * 1e-9
        self._acc.tacc.offer(m.tAcc * 1e-9, R_UBX - 3)

    def _nav_status(self, m: Any) -> None:  # UBX-NAV-STATUS (0x01 0x03)
        mode, status = _ubx_fix(m.gpsFix, m.gpsFixOk, m.diffSoln, m.carrSoln)
        self._acc.mode.offer(mode, R_UBX)
        self._acc.status.offer(status, R_UBX)

    def _nav_sol(self, m: Any) -> None:  # UBX-NAV-SOL (0x01 0x06)
        mode, status = _ubx_fix(m.gpsFix, m.gpsfixOK, m.diffSoln, 0)
        self._acc.mode.offer(mode, R_UBX - 1)
        self._acc.status.offer(status, R_UBX - 1)
        self._acc.used.offer(int(m.numSV), R_UBX - 2)
        self._acc.pdop.offer(float(m.pDOP), R_UBX - 2)

    def _nav_dop(self, m: Any) -> None:  # UBX-NAV-DOP (0x01 0x04)
        self._acc.pdop.offer(float(m.pDOP), R_UBX)
        self._acc.tdop.offer(float(m.tDOP), R_UBX)

    def _nav_sat(self, m: Any) -> None:  # UBX-NAV-SAT (0x01 0x35)
        self._satellites(m, int(m.numSvs), "cno", "svUsed")

    def _nav_svinfo(self, m: Any) -> None:  # UBX-NAV-SVINFO (0x01 0x30), before protocol 27
        self._satellites(m, int(m.numCh), "cno", "svUsed", rank=R_UBX - 1)

    def _satellites(self, m: Any, count: int, cno: str, used: str, rank: int = R_UBX) -> None:
        cn0s = [float(getattr(m, f"{cno}_{i:02d}")) for i in range(1, count + 1)
                if getattr(m, f"{used}_{i:02d}", 0)]
        self._acc.used.offer(len(cn0s), rank)
        self._acc.visible.offer(count, rank)
        self._acc.cn0.offer(sum(cn0s) / len(cn0s) if cn0s else None, rank)

    def _tim_tp(self, m: Any) -> None:  # UBX-TIM-TP (0x0D 0x01)
        # qErr (ps) of the next pulse; flags bit 4 qErrInvalid (protocol >= 32) says ignore it.
        self.qerr = None if getattr(m, "qErrInvalid", 0) else m.qErr * 1e-12
        self.next_pulse = (int(m.week), int(m.towMS), int(m.timeBase))

    def _mon_hw(self, m: Any) -> None:  # UBX-MON-HW (0x0A 0x09)
        self.antenna_status = int(m.aStatus)
        self.jamming_indicator = int(m.jamInd)
        self.jamming_state = int(m.jammingState)

    def _mon_rf(self, m: Any) -> None:  # UBX-MON-RF (0x0A 0x38): one block per RF band
        blocks = range(1, int(m.nBlocks) + 1)
        if not blocks:
            return
        states = [int(getattr(m, f"antStatus_{i:02d}")) for i in blocks]
        faults = [s for s in states if s in (3, 4)]  # a short or open on any band wins
        self.antenna_status = faults[0] if faults else states[0]
        self.jamming_indicator = max(int(getattr(m, f"jamInd_{i:02d}")) for i in blocks)
        self.jamming_state = max(int(getattr(m, f"jammingState_{i:02d}")) for i in blocks)

    def _tim_svin(self, m: Any) -> None:  # UBX-TIM-SVIN (0x0D 0x04): meanV in mm^2
        self.survey_active, self.survey_valid = bool(m.active), bool(m.valid)
        self.survey_accuracy = math.sqrt(m.meanV) / 1000.0
        self.survey_duration = float(m.dur)

    def _nav_svin(self, m: Any) -> None:  # UBX-NAV-SVIN (0x01 0x3B): meanAcc in 0.1 mm
        self.survey_active, self.survey_valid = bool(m.active), bool(m.valid)
        self.survey_accuracy = m.meanAcc * 1e-4
        self.survey_duration = float(m.dur)


# Payload lengths of the UBX messages decoded here: (fixed part, size of each repeated
# block, name of the count field).  pyubx2 pads a short payload with zeros, which would
# read as "no fix", so a length that does not fit is refused before decoding.
_UBX_LENGTHS: dict[str, tuple[int, int]] = {
    "NAV-PVT": (92, 0), "NAV-TIMEUTC": (20, 0), "NAV-TIMEGPS": (16, 0),
    "NAV-TIMELS": (24, 0), "NAV-CLOCK": (20, 0), "NAV-STATUS": (16, 0), "NAV-SOL": (52, 0),
    "NAV-DOP": (18, 0), "NAV-SAT": (8, 12), "NAV-SVINFO": (8, 12), "NAV-SVIN": (40, 0),
    "TIM-TP": (16, 0), "TIM-SVIN": (28, 0), "MON-HW": (60, 0), "MON-RF": (4, 24),
    "NAV-EOE": (4, 0),
}


def _check_length(identity: str, raw: bytes) -> None:
    spec = _UBX_LENGTHS.get(identity)
    if spec is None:
        return
    fixed, block = spec
    length = len(raw) - 8
    # Count fields: NAV-SAT numSvs at payload offset 5, NAV-SVINFO numCh at 4, MON-RF
    # nBlocks at 1.
    at = {"NAV-SAT": 5, "NAV-SVINFO": 4, "MON-RF": 1}.get(identity)
    count = raw[6 + at] if at is not None and length > at else 0
    if length != fixed + block * count:
        raise GnssDecodeError(f"{identity} payload of {length} bytes, expected "
                              f"{fixed + block * count}", raw, reason="bad_length")


def _sv_key(system: int | None, talker: str, svid: int) -> tuple[int, int]:
    """(system, svid) to match a GSA entry with its GSV entry."""
    if system is None or system == 0:
        system = _TALKER_SYSTEM.get(talker)
    if system is None:  # "GN" talker before NMEA 4.10: tell GLONASS by its 65-96 range
        system = 2 if 65 <= svid <= 96 else 1
    return system, svid


_UBX_HANDLERS = {
    "NAV-PVT": EpochDecoder._nav_pvt,
    "NAV-TIMEUTC": EpochDecoder._nav_timeutc,
    "NAV-TIMEGPS": EpochDecoder._nav_timegps,
    "NAV-TIMELS": EpochDecoder._nav_timels,
    "NAV-CLOCK": EpochDecoder._nav_clock,
    "NAV-STATUS": EpochDecoder._nav_status,
    "NAV-SOL": EpochDecoder._nav_sol,
    "NAV-DOP": EpochDecoder._nav_dop,
    "NAV-SAT": EpochDecoder._nav_sat,
    "NAV-SVINFO": EpochDecoder._nav_svinfo,
    "NAV-SVIN": EpochDecoder._nav_svin,
    "TIM-TP": EpochDecoder._tim_tp,
    "TIM-SVIN": EpochDecoder._tim_svin,
    "MON-HW": EpochDecoder._mon_hw,
    "MON-RF": EpochDecoder._mon_rf,
}


WANTED_NMEA = frozenset({"RMC", "GGA", "GNS", "GLL", "ZDA", "GSA", "GSV", "TXT"})


def wanted(identity: str) -> bool:
    """The frames this decoder reads (the splitter's decode filter)."""
    if identity in _UBX_HANDLERS:
        return True
    return not identity.startswith("P") and identity[2:] in WANTED_NMEA


def decode_frames(frames: list[Frame]) -> list[Epoch]:
    """Every epoch of a finished capture."""
    decoder = EpochDecoder()
    epochs: list[Epoch] = []
    for frame in frames:
        with contextlib.suppress(GnssDecodeError):
            epochs.extend(decoder.feed(frame))
    last = decoder.flush()
    if last is not None:
        epochs.append(last)
    return epochs
