"""chrony's command and monitoring protocol (the one chronyc speaks): packets and codec.

Layouts follow chrony's ``candm.h`` for protocol version 6 (chrony 4.x): a
request is a 20-octet header, the command's data and zero padding up to the
length of its reply (chronyd drops a reply longer than the request, an
anti-amplification rule); a reply is a 28-octet header and the report.  All
integers are big-endian.  Two encodings are chrony's own:

- **Float** (``candm.h`` ``Float``, ``util.c`` ``UTI_FloatNetworkToHost``): a
  32-bit word of a 7-bit signed exponent and a 25-bit signed coefficient,
  value = coef · 2^(exp − 25).
- **Timespec**: seconds high/low words and nanoseconds; a high word of
  0x7fffffff means a 32-bit time_t (treated as 0).

Only this module's ``ChronyProtoError`` family escapes the decoder.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from dataclasses import dataclass

PROTO_VERSION = 6  # candm.h PROTO_VERSION_NUMBER, chrony 3.x and 4.x
PKT_TYPE_CMD_REQUEST = 1
PKT_TYPE_CMD_REPLY = 2

# Request codes (candm.h REQ_*)
REQ_N_SOURCES = 14
REQ_SOURCE_DATA = 15
REQ_TRACKING = 33
REQ_SOURCESTATS = 34
REQ_SERVER_STATS = 54
REQ_NTP_SOURCE_NAME = 65
REQ_AUTH_DATA = 67

# Reply codes (candm.h RPY_*)
RPY_NULL = 1
RPY_N_SOURCES = 2
RPY_SOURCE_DATA = 3
RPY_TRACKING = 5
RPY_SOURCESTATS = 6
RPY_SERVER_STATS = 14  # chrony 3.x: five 32-bit counters
RPY_NTP_SOURCE_NAME = 19
RPY_AUTH_DATA = 20
RPY_SERVER_STATS2 = 22  # chrony 4.0-4.1: eight 32-bit counters (NTS-KE, auth)
RPY_SERVER_STATS3 = 24  # chrony 4.2-4.3: eleven 32-bit counters (interleaved, timestamps)
RPY_SERVER_STATS4 = 25  # chrony 4.4+: 64-bit counters, timestamp sources, 4 reserved

# Status codes (candm.h STT_*), and the error reason each maps to.
STT_SUCCESS = 0
STATUS_NAMES = {
    1: "failed", 2: "unauthorised", 3: "invalid", 4: "no_such_source", 5: "invalid_ts",
    6: "not_enabled", 7: "bad_subnet", 8: "access_allowed", 9: "access_denied",
    10: "no_host_access", 11: "source_already_known", 12: "too_many_sources", 13: "no_rtc",
    14: "bad_rtc_file", 15: "inactive", 16: "bad_sample", 17: "invalid_af",
    18: "bad_packet_version", 19: "bad_packet_length", 21: "invalid_name",
}
STT_UNAUTH = 2
STT_NOSUCHSOURCE = 4
STT_BADPKTVERSION = 18

REQUEST_HEADER = struct.Struct(">BBBBHHIII")  # version, type, res1, res2, command, attempt, seq
REPLY_HEADER = struct.Struct(">BBBBHHHHHHIII")
assert REQUEST_HEADER.size == 20 and REPLY_HEADER.size == 28

IPADDR_LEN = 20  # union of 16 octets, family (2), padding (2)
IPADDR_UNSPEC, IPADDR_INET4, IPADDR_INET6, IPADDR_ID = 0, 1, 2, 3

# Source report enums (candm.h RPY_SD_MD_* / RPY_SD_ST_*), with chronyc's characters.
SOURCE_MODES = {0: ("client", "^"), 1: ("peer", "="), 2: ("reference", "#")}
SOURCE_STATES = {0: ("selected", "*"), 1: ("nonselectable", "?"), 2: ("falseticker", "x"),
                 3: ("jittery", "~"), 4: ("unselected", "+"), 5: ("selectable", "-")}
LEAP_STATUS = {0: "Normal", 1: "Insert second", 2: "Delete second", 3: "Not synchronised"}
AUTH_MODES = {0: "none", 1: "symmetric", 2: "nts"}

_TRACKING = struct.Struct(">I20sHH12s9i")
_SOURCE_DATA = struct.Struct(">20shHHHHHI3i")
_SOURCESTATS = struct.Struct(">I20sIII5i")
_AUTH_DATA = struct.Struct(">HHIHHIHHHH")
_U32 = struct.Struct(">I")

# Reply data lengths (octets after the 28-octet header) for the request padding; for
# server stats the longest known format, so any 4.x chronyd has room to answer.
_REPLY_DATA_LEN = {
    REQ_N_SOURCES: 4,
    REQ_SOURCE_DATA: _SOURCE_DATA.size,
    REQ_TRACKING: _TRACKING.size,
    REQ_SOURCESTATS: _SOURCESTATS.size,
    REQ_SERVER_STATS: 21 * 8,
    REQ_NTP_SOURCE_NAME: 256,
    REQ_AUTH_DATA: _AUTH_DATA.size,
}


# -- errors -------------------------------------------------------------------------------


class ChronyProtoError(Exception):
    """A reply that cannot be used; ``reason`` is the ``timemon_probe_errors_total`` label."""

    reason = "malformed"


class ChronyTruncated(ChronyProtoError):
    reason = "truncated"


class ChronyMalformed(ChronyProtoError):
    reason = "malformed"


class ChronyBadVersion(ChronyProtoError):
    """The reply's protocol version is not 6: a chronyd this client does not speak."""

    reason = "bad_version"


class ChronyStatusError(ChronyProtoError):
    """chronyd answered with a status other than success (not authorised, no such source)."""

    def __init__(self, status: int, command: int) -> None:
        self.status = status
        self.command = command
        self.reason = STATUS_NAMES.get(status, "status_error")
        super().__init__(f"chronyd refused command {command}: "
                         f"{STATUS_NAMES.get(status, f'status {status}').replace('_', ' ')}")


# -- chrony's number formats ----------------------------------------------------------------

FLOAT_EXP_BITS = 7
FLOAT_COEF_BITS = 32 - FLOAT_EXP_BITS


def decode_float(word: int) -> float:
    """chrony's 32-bit Float (unsigned word as read from the wire) to a Python float."""
    exp = word >> FLOAT_COEF_BITS
    if exp >= 1 << (FLOAT_EXP_BITS - 1):
        exp -= 1 << FLOAT_EXP_BITS
    coef = word & ((1 << FLOAT_COEF_BITS) - 1)
    if coef >= 1 << (FLOAT_COEF_BITS - 1):
        coef -= 1 << FLOAT_COEF_BITS
    return coef * 2.0 ** (exp - FLOAT_COEF_BITS)


def encode_float(x: float) -> int:
    """A float to chrony's Float word (as chronyd encodes it; for tests and fakes)."""
    exp_max = (1 << (FLOAT_EXP_BITS - 1)) - 1
    exp_min = -(1 << (FLOAT_EXP_BITS - 1))
    coef_max = (1 << (FLOAT_COEF_BITS - 1)) - 1
    neg = x < 0
    x = abs(x) if x == x else 0.0  # NaN is sent as zero
    if x < 1e-100:
        exp = coef = 0
    elif x > 1e100:
        exp, coef = exp_max, coef_max + neg
    else:
        exp = int(math.log(x) / math.log(2) + 1)  # C's truncation toward zero
        coef = int(x * 2.0 ** (FLOAT_COEF_BITS - exp) + 0.5)
        while coef > coef_max + neg:
            coef >>= 1
            exp += 1
        if exp > exp_max:
            exp, coef = exp_max, coef_max + neg
        elif exp < exp_min:
            if exp + FLOAT_COEF_BITS >= exp_min:
                coef >>= exp_min - exp
                exp = exp_min
            else:
                exp = coef = 0
    if neg:
        coef = (-coef) & ((1 << FLOAT_COEF_BITS) - 1)
    return ((exp & ((1 << FLOAT_EXP_BITS) - 1)) << FLOAT_COEF_BITS) | coef


def _f(word: int) -> float:
    return decode_float(word & 0xFFFFFFFF)


def decode_timespec(data: bytes) -> int:
    """candm.h Timespec (12 octets) to integer Unix nanoseconds."""
    high, low, nsec = struct.unpack(">III", data)
    if high == 0x7FFFFFFF:  # TV_NOHIGHSEC
        high = 0
    return ((high << 32) | low) * 1_000_000_000 + min(nsec, 999_999_999)


@dataclass(frozen=True)
class IPAddr:
    """candm.h IPAddr: an IPv4/IPv6 address, an unresolved source's ID, or unspecified."""

    family: int
    raw: bytes  # the 16-octet union as sent

    @classmethod
    def decode(cls, data: bytes) -> IPAddr:
        family = struct.unpack_from(">H", data, 16)[0]
        if family not in (IPADDR_UNSPEC, IPADDR_INET4, IPADDR_INET6, IPADDR_ID):
            raise ChronyMalformed(f"address family {family} is not one chrony uses")
        return cls(family, bytes(data[:16]))

    def encode(self) -> bytes:
        return self.raw.ljust(16, b"\0")[:16] + struct.pack(">HH", self.family, 0)

    @property
    def in4(self) -> int:
        return _U32.unpack_from(self.raw)[0]

    def __str__(self) -> str:
        # As chrony's UTI_IPToString prints it (what ``chronyc -c`` shows).
        if self.family == IPADDR_INET4:
            return str(ipaddress.IPv4Address(self.raw[:4]))
        if self.family == IPADDR_INET6:
            return str(ipaddress.IPv6Address(self.raw))
        if self.family == IPADDR_ID:
            return f"ID#{self.in4:010d}"
        return "[UNSPEC]"


def refid_text(refid: int) -> str:
    """A reference id as chrony's UTI_RefidToString: its printable ASCII characters."""
    return "".join(chr(b) for b in refid.to_bytes(4, "big") if 0x20 < b < 0x7F)


# -- requests -------------------------------------------------------------------------------


def build_request(command: int, sequence: int, data: bytes = b"") -> bytes:
    """A version 6 request, zero-padded to the length of its reply."""
    header = REQUEST_HEADER.pack(PROTO_VERSION, PKT_TYPE_CMD_REQUEST, 0, 0, command, 0,
                                 sequence & 0xFFFFFFFF, 0, 0)
    packet = header + data
    want = REPLY_HEADER.size + _REPLY_DATA_LEN.get(command, 0)
    return packet + bytes(max(0, want - len(packet)))


def request_index(command: int, sequence: int, index: int) -> bytes:
    return build_request(command, sequence, struct.pack(">I", index))


def request_address(command: int, sequence: int, address: IPAddr) -> bytes:
    return build_request(command, sequence, address.encode())


# -- reports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracking:
    """RPY_TRACKING: the state of chronyd's clock discipline (``chronyc tracking``)."""

    ref_id: int
    address: IPAddr
    stratum: int
    leap_status: int
    ref_time_ns: int
    current_correction: float  # "System time": reference − local still to correct
    last_offset: float
    rms_offset: float
    freq_ppm: float
    resid_freq_ppm: float
    skew_ppm: float
    root_delay: float
    root_dispersion: float
    last_update_interval: float

    @property
    def name(self) -> str:
        """The reference's name as ``chronyc -c tracking`` prints it."""
        if self.address.family == IPADDR_UNSPEC:
            return refid_text(self.ref_id)
        return str(self.address)

    @property
    def leap_text(self) -> str:
        return LEAP_STATUS.get(self.leap_status, "Unknown")

    @classmethod
    def decode(cls, data: bytes) -> Tracking:
        ref_id, ip, stratum, leap, ref_time, *floats = _TRACKING.unpack_from(data)
        f = [_f(v) for v in floats]
        return cls(ref_id, IPAddr.decode(ip), stratum, leap, decode_timespec(ref_time), *f)


@dataclass(frozen=True)
class SourceData:
    """RPY_SOURCE_DATA: one line of ``chronyc sources``."""

    address: IPAddr
    poll: int
    stratum: int
    state: int
    mode: int
    flags: int
    reachability: int
    since_sample: int
    orig_latest_meas: float
    latest_meas: float  # adjusted offset of the last sample, local − source
    latest_meas_err: float

    @property
    def name(self) -> str:
        """As ``chronyc -c sources`` names it: a reference clock by its refid, else the IP."""
        if self.mode == 2 and self.address.family == IPADDR_INET4:
            return refid_text(self.address.in4)
        return str(self.address)

    @property
    def mode_name(self) -> str:
        return SOURCE_MODES.get(self.mode, ("unknown", " "))[0]

    @property
    def state_name(self) -> str:
        return SOURCE_STATES.get(self.state, ("unknown", " "))[0]

    @property
    def mode_char(self) -> str:
        return SOURCE_MODES.get(self.mode, ("unknown", " "))[1]

    @property
    def state_char(self) -> str:
        return SOURCE_STATES.get(self.state, ("unknown", " "))[1]

    @classmethod
    def decode(cls, data: bytes) -> SourceData:
        ip, poll, stratum, state, mode, flags, reach, since, *floats = \
            _SOURCE_DATA.unpack_from(data)
        return cls(IPAddr.decode(ip), poll, stratum, state, mode, flags, reach, since,
                   *(_f(v) for v in floats))


@dataclass(frozen=True)
class SourceStats:
    """RPY_SOURCESTATS: one line of ``chronyc sourcestats``."""

    ref_id: int
    address: IPAddr
    n_samples: int
    n_runs: int
    span_seconds: int
    sd: float
    resid_freq_ppm: float
    skew_ppm: float
    est_offset: float
    est_offset_err: float

    @property
    def name(self) -> str:
        if self.address.family == IPADDR_UNSPEC:
            return refid_text(self.ref_id)
        return str(self.address)

    @classmethod
    def decode(cls, data: bytes) -> SourceStats:
        ref_id, ip, n_samples, n_runs, span, *floats = _SOURCESTATS.unpack_from(data)
        return cls(ref_id, IPAddr.decode(ip), n_samples, n_runs, span,
                   *(_f(v) for v in floats))


SERVER_STATS_FIELDS = (
    "ntp_hits", "nke_hits", "cmd_hits", "ntp_drops", "nke_drops", "cmd_drops", "log_drops",
    "ntp_auth_hits", "ntp_interleaved_hits", "ntp_timestamps", "ntp_span_seconds",
    "ntp_daemon_rx_timestamps", "ntp_daemon_tx_timestamps", "ntp_kernel_rx_timestamps",
    "ntp_kernel_tx_timestamps", "ntp_hw_rx_timestamps", "ntp_hw_tx_timestamps",
)
# Which counters each format carries, and the width of each (octets).
_SERVER_STATS_FORMATS = {
    RPY_SERVER_STATS: (("ntp_hits", "cmd_hits", "ntp_drops", "cmd_drops", "log_drops"), 4),
    RPY_SERVER_STATS2: (SERVER_STATS_FIELDS[:8], 4),
    RPY_SERVER_STATS3: (SERVER_STATS_FIELDS[:11], 4),
    RPY_SERVER_STATS4: (SERVER_STATS_FIELDS, 8),
}


@dataclass(frozen=True)
class ServerStats:
    """RPY_SERVER_STATS*: chronyd's server counters (``chronyc serverstats``).

    ``counters`` holds those the reply's format carries (older chronyd: fewer).
    """

    counters: dict[str, int]

    @classmethod
    def decode(cls, reply_code: int, data: bytes) -> ServerStats:
        names, width = _SERVER_STATS_FORMATS[reply_code]
        need = len(names) * width
        if len(data) < need:
            raise ChronyTruncated(f"server stats: {len(data)} octets, need {need}")
        fmt = ">" + ("Q" if width == 8 else "I") * len(names)
        return cls(dict(zip(names, struct.unpack_from(fmt, data), strict=True)))


@dataclass(frozen=True)
class AuthData:
    """RPY_AUTH_DATA: a source's authentication (``chronyc authdata``: NTS, symmetric key)."""

    mode: int
    key_type: int
    key_id: int
    key_length: int
    ke_attempts: int
    last_ke_ago: int
    cookies: int
    cookie_length: int
    nak: int

    @property
    def mode_name(self) -> str:
        return AUTH_MODES.get(self.mode, "unknown")

    @classmethod
    def decode(cls, data: bytes) -> AuthData:
        mode, key_type, key_id, key_len, attempts, last, cookies, clen, nak, _pad = \
            _AUTH_DATA.unpack_from(data)
        return cls(mode, key_type, key_id, key_len, attempts, last, cookies, clen, nak)


def decode_source_name(data: bytes) -> str:
    """RPY_NTP_SOURCE_NAME: the name a source was configured with (NUL-terminated)."""
    raw = bytes(data[:256])
    if b"\0" not in raw:
        raise ChronyMalformed("source name is not terminated")
    name = raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
    if not all(c.isprintable() and not c.isspace() for c in name):
        raise ChronyMalformed("source name has unprintable characters")
    return name


Report = Tracking | SourceData | SourceStats | ServerStats | AuthData | int | str | None

# reply code -> (minimum data length, decoder)
_DECODERS = {
    RPY_NULL: 0,
    RPY_N_SOURCES: 4,
    RPY_SOURCE_DATA: _SOURCE_DATA.size,
    RPY_TRACKING: _TRACKING.size,
    RPY_SOURCESTATS: _SOURCESTATS.size,
    RPY_SERVER_STATS: 5 * 4,
    RPY_SERVER_STATS2: 8 * 4,
    RPY_SERVER_STATS3: 11 * 4,
    RPY_SERVER_STATS4: 17 * 8,
    RPY_NTP_SOURCE_NAME: 256,
    RPY_AUTH_DATA: _AUTH_DATA.size,
}


@dataclass(frozen=True)
class Reply:
    command: int
    reply: int
    status: int
    sequence: int
    report: Report


def decode_reply(data: bytes) -> Reply:
    """Decode one reply datagram; a non-success status raises ``ChronyStatusError``."""
    if len(data) < 4:
        raise ChronyTruncated(f"{len(data)} octets, shorter than a reply header")
    version, pkt_type = data[0], data[1]
    if version != PROTO_VERSION:
        raise ChronyBadVersion(f"reply of protocol version {version}; this client speaks "
                               f"version {PROTO_VERSION} (chrony 3.x-4.x)")
    if pkt_type != PKT_TYPE_CMD_REPLY:
        raise ChronyMalformed(f"packet type {pkt_type} is not a reply")
    if len(data) < REPLY_HEADER.size:
        raise ChronyTruncated(f"{len(data)} octets, shorter than a reply header")
    (_v, _t, _r1, _r2, command, reply_code, status, _p1, _p2, _p3, sequence, _p4,
     _p5) = REPLY_HEADER.unpack_from(data)
    if status != STT_SUCCESS:
        raise ChronyStatusError(status, command)
    body = data[REPLY_HEADER.size:]
    need = _DECODERS.get(reply_code)
    if need is None:
        raise ChronyMalformed(f"reply code {reply_code} is not one this client asks for")
    if len(body) < need:
        raise ChronyTruncated(f"reply code {reply_code}: {len(body)} octets of data, "
                              f"need {need}")
    report: Report
    try:
        if reply_code == RPY_NULL:
            report = None
        elif reply_code == RPY_N_SOURCES:
            report = _U32.unpack_from(body)[0]
        elif reply_code == RPY_SOURCE_DATA:
            report = SourceData.decode(body)
        elif reply_code == RPY_TRACKING:
            report = Tracking.decode(body)
        elif reply_code == RPY_SOURCESTATS:
            report = SourceStats.decode(body)
        elif reply_code == RPY_NTP_SOURCE_NAME:
            report = decode_source_name(body)
        elif reply_code == RPY_AUTH_DATA:
            report = AuthData.decode(body)
        else:
            report = ServerStats.decode(reply_code, body)
    except struct.error as exc:  # pragma: no cover - lengths are checked above
        raise ChronyTruncated(str(exc)) from exc
    return Reply(command, reply_code, status, sequence, report)


# Which reply code answers which request (server stats: any of its formats).
EXPECTED_REPLIES = {
    REQ_N_SOURCES: frozenset({RPY_N_SOURCES}),
    REQ_SOURCE_DATA: frozenset({RPY_SOURCE_DATA}),
    REQ_TRACKING: frozenset({RPY_TRACKING}),
    REQ_SOURCESTATS: frozenset({RPY_SOURCESTATS}),
    REQ_SERVER_STATS: frozenset(_SERVER_STATS_FORMATS),
    REQ_NTP_SOURCE_NAME: frozenset({RPY_NTP_SOURCE_NAME}),
    REQ_AUTH_DATA: frozenset({RPY_AUTH_DATA}),
}
