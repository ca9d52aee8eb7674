"""IEEE 1588 management messages: encode GET requests, decode replies and data sets.

Pure codec, no I/O.  Formats follow IEEE 1588-2008:

- common header, clause 13.3 (34 octets);
- management message, clause 15.4 (target port identity, boundary hops,
  actionField) and the MANAGEMENT TLV, clause 15.5.2 (tlvType 0x0001, length,
  managementId, dataField);
- MANAGEMENT_ERROR_STATUS TLV, clause 15.5.4 (tlvType 0x0002);
- data sets, clause 15.5.3: DEFAULT_DATA_SET 0x2000 (15.5.3.3.1),
  CURRENT_DATA_SET 0x2001 (15.5.3.4.1), PARENT_DATA_SET 0x2002 (15.5.3.5.1),
  TIME_PROPERTIES_DATA_SET 0x2003 (15.5.3.6.1), PORT_DATA_SET 0x2004 (15.5.3.7.1);
- linuxptp's implementation-specific TLVs (tlv.h): TIME_STATUS_NP 0xC000 and
  PORT_STATS_NP 0xC005.  All fields are big-endian except PORT_STATS_NP's
  counters, which linuxptp sends little-endian (tlv.c, ``__le64_to_cpu``).

Checked against ptp4l/pmc 3.1.1: every layout decodes to what ``pmc`` prints
(tests/test_ptp_live.py).  Bad input raises only ``PtpMgmtError`` subclasses,
whose ``reason`` is the ``timemon_probe_errors_total`` label.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

# -- errors -------------------------------------------------------------------------


class PtpMgmtError(Exception):
    """Base of every decoding error; ``reason`` labels ``timemon_probe_errors_total``."""

    reason = "malformed"


class TruncatedMessage(PtpMgmtError):
    """The datagram, a TLV or a data set is shorter than its format requires."""

    reason = "truncated"


class MalformedMessage(PtpMgmtError):
    """Not a PTPv2 management message, or a field outside its format."""

    reason = "malformed"


class ManagementErrorStatus(PtpMgmtError):
    """ptp4l answered with a MANAGEMENT_ERROR_STATUS TLV (clause 15.5.4)."""

    reason = "management_error"

    def __init__(self, error_id: int, management_id: int, text: str = "") -> None:
        name = MANAGEMENT_ERRORS.get(error_id, f"0x{error_id:04x}")
        label = MANAGEMENT_IDS.get(management_id, f"0x{management_id:04x}")
        super().__init__(f"{label}: {name}" + (f" ({text})" if text else ""))
        self.error_id = error_id
        self.management_id = management_id


# -- constants ----------------------------------------------------------------------

PTP_VERSION = 2
MESSAGE_TYPE_MANAGEMENT = 0xD  # clause 13.3.2.2, Table 19
CONTROL_MANAGEMENT = 0x04  # clause 13.3.2.10, Table 23
LOG_INTERVAL_NONE = 0x7F  # clause 13.3.2.11: management messages carry 0x7F

HEADER_LEN = 34  # clause 13.3.1
MANAGEMENT_BODY_LEN = 14  # targetPortIdentity 10, hops 2, action 1, reserved 1
MANAGEMENT_PREFIX_LEN = HEADER_LEN + MANAGEMENT_BODY_LEN  # 48: where the TLV starts

TLV_MANAGEMENT = 0x0001
TLV_MANAGEMENT_ERROR_STATUS = 0x0002

# actionField, clause 15.4.1.6, Table 38
ACTION_GET, ACTION_SET, ACTION_RESPONSE, ACTION_COMMAND, ACTION_ACKNOWLEDGE = range(5)
ACTION_NAMES = {0: "GET", 1: "SET", 2: "RESPONSE", 3: "COMMAND", 4: "ACKNOWLEDGE"}

DEFAULT_DATA_SET = 0x2000
CURRENT_DATA_SET = 0x2001
PARENT_DATA_SET = 0x2002
TIME_PROPERTIES_DATA_SET = 0x2003
PORT_DATA_SET = 0x2004
TIME_STATUS_NP = 0xC000  # linuxptp
PORT_STATS_NP = 0xC005  # linuxptp

MANAGEMENT_IDS = {
    DEFAULT_DATA_SET: "DEFAULT_DATA_SET",
    CURRENT_DATA_SET: "CURRENT_DATA_SET",
    PARENT_DATA_SET: "PARENT_DATA_SET",
    TIME_PROPERTIES_DATA_SET: "TIME_PROPERTIES_DATA_SET",
    PORT_DATA_SET: "PORT_DATA_SET",
    TIME_STATUS_NP: "TIME_STATUS_NP",
    PORT_STATS_NP: "PORT_STATS_NP",
}
#: Management ids answered once per port (clause 15.5.2.3, Table 40 "applies to: port").
PORT_LEVEL_IDS = frozenset({PORT_DATA_SET, PORT_STATS_NP})

# managementErrorId, clause 15.5.4.1.4, Table 72
MANAGEMENT_ERRORS = {
    0x0001: "RESPONSE_TOO_BIG",
    0x0002: "NO_SUCH_ID",
    0x0003: "WRONG_LENGTH",
    0x0004: "WRONG_VALUE",
    0x0005: "NOT_SETABLE",
    0x0006: "NOT_SUPPORTED",
    0xFFFE: "GENERAL_ERROR",
}

# portState, clause 8.2.5.3.1, Table 8 (10 is linuxptp's GRAND_MASTER, fsm.h)
PORT_STATES = {
    1: "INITIALIZING",
    2: "FAULTY",
    3: "DISABLED",
    4: "LISTENING",
    5: "PRE_MASTER",
    6: "MASTER",
    7: "PASSIVE",
    8: "UNCALIBRATED",
    9: "SLAVE",
    10: "GRAND_MASTER",
}
PORT_STATE_UNCALIBRATED = 8
PORT_STATE_SLAVE = 9

# messageType indices of PORT_STATS_NP's counter arrays (clause 13.3.2.2, Table 19)
MESSAGE_TYPES = {
    0x0: "sync",
    0x1: "delay_req",
    0x2: "pdelay_req",
    0x3: "pdelay_resp",
    0x8: "follow_up",
    0x9: "delay_resp",
    0xA: "pdelay_resp_follow_up",
    0xB: "announce",
    0xC: "signaling",
    0xD: "management",
}

WILDCARD_PORT = b"\xff" * 10  # all ones: every port of every clock (clause 15.3.1)


def scaled_ns_to_seconds(value: int) -> float:
    """TimeInterval (clause 5.3.2): nanoseconds multiplied by 2**16."""
    return value / 65536 / 1e9


def clock_identity_text(identity: bytes) -> str:
    """The way pmc prints a clockIdentity: ``xxxxxx.xxxx.xxxxxx``."""
    h = identity.hex()
    return f"{h[:6]}.{h[6:10]}.{h[10:16]}"


@dataclass(frozen=True, slots=True)
class PortIdentity:
    clock_identity: bytes  # 8 octets
    port_number: int

    def __str__(self) -> str:
        return f"{clock_identity_text(self.clock_identity)}-{self.port_number}"

    def encode(self) -> bytes:
        return self.clock_identity + struct.pack(">H", self.port_number)

    @classmethod
    def decode(cls, data: bytes) -> PortIdentity:
        return cls(bytes(data[:8]), struct.unpack_from(">H", data, 8)[0])


# -- messages -----------------------------------------------------------------------


def encode_get(management_id: int, sequence_id: int, domain: int = 0,
               source: PortIdentity | None = None, boundary_hops: int = 0) -> bytes:
    """A GET request for ``management_id`` to every port (clause 15.4), empty dataField.

    The empty dataField is what ``pmc -z`` sends; ptp4l answers it as it
    answers pmc's zero-filled one.
    """
    if not 0 <= domain <= 255:
        raise ValueError("domain must be 0-255")
    src = source or PortIdentity(bytes(8), 0)
    tlv = struct.pack(">HHH", TLV_MANAGEMENT, 2, management_id)
    length = MANAGEMENT_PREFIX_LEN + len(tlv)
    header = struct.pack(
        ">BBHBB2sqI10sHBb",
        MESSAGE_TYPE_MANAGEMENT,  # transportSpecific 0 | messageType
        PTP_VERSION,
        length,
        domain,
        0,
        b"\x00\x00",  # flagField
        0,  # correctionField
        0,
        src.encode(),
        sequence_id & 0xFFFF,
        CONTROL_MANAGEMENT,
        LOG_INTERVAL_NONE,
    )
    body = WILDCARD_PORT + struct.pack(">BBBB", boundary_hops, boundary_hops, ACTION_GET, 0)
    return header + body + tlv


@dataclass(frozen=True, slots=True)
class ManagementMessage:
    """A decoded management message: its header fields and its first TLV.

    ``error`` is set (and ``data`` empty) when the TLV is MANAGEMENT_ERROR_STATUS.
    """

    domain: int
    sequence_id: int
    source: PortIdentity
    action: int
    management_id: int
    data: bytes
    error: ManagementErrorStatus | None = None

    def dataset(self) -> DataSet:
        """The data set in the reply; raises the error status if it was one."""
        if self.error is not None:
            raise self.error
        return decode_dataset(self.management_id, self.data)


def encode_message(msg: ManagementMessage) -> bytes:
    """Encode a management message (for RESPONSE test vectors and the fuzz round trip)."""
    if msg.error is not None:
        value = struct.pack(">HH4x", msg.error.error_id, msg.error.management_id) + b"\x00"
        if len(value) % 2:
            value += b"\x00"
        tlv = struct.pack(">HH", TLV_MANAGEMENT_ERROR_STATUS, len(value)) + value
    else:
        data = msg.data + (b"\x00" if len(msg.data) % 2 else b"")
        tlv = struct.pack(">HHH", TLV_MANAGEMENT, 2 + len(data), msg.management_id) + data
    length = MANAGEMENT_PREFIX_LEN + len(tlv)
    header = struct.pack(">BBHBB2sqI10sHBb", MESSAGE_TYPE_MANAGEMENT, PTP_VERSION, length,
                         msg.domain, 0, b"\x00\x00", 0, 0, msg.source.encode(),
                         msg.sequence_id, CONTROL_MANAGEMENT, LOG_INTERVAL_NONE)
    body = WILDCARD_PORT + struct.pack(">BBBB", 0, 0, msg.action, 0)
    return header + body + tlv


def decode_message(datagram: bytes) -> ManagementMessage:
    """Decode one management datagram (header, management fields, first TLV)."""
    data = bytes(datagram)
    if len(data) < HEADER_LEN:
        raise TruncatedMessage(f"{len(data)} octets, shorter than a PTP header")
    message_type = data[0] & 0x0F
    if message_type != MESSAGE_TYPE_MANAGEMENT:
        raise MalformedMessage(f"messageType {message_type}, not management (13)")
    version = data[1] & 0x0F
    if version != PTP_VERSION:
        raise MalformedMessage(f"versionPTP {version}, expected 2")
    (length,) = struct.unpack_from(">H", data, 2)
    if length > len(data):
        raise TruncatedMessage(f"messageLength {length} but only {len(data)} octets")
    if length < MANAGEMENT_PREFIX_LEN + 4:
        raise TruncatedMessage(f"messageLength {length}, too short for a management TLV")
    data = data[:length]  # clause 13.3.2.4: octets past messageLength are padding
    domain = data[4]
    source = PortIdentity.decode(data[20:30])
    (sequence_id,) = struct.unpack_from(">H", data, 30)
    action = data[46] & 0x0F
    if action not in ACTION_NAMES:
        raise MalformedMessage(f"actionField {action} is reserved")
    tlv_type, tlv_len = struct.unpack_from(">HH", data, MANAGEMENT_PREFIX_LEN)
    value = data[MANAGEMENT_PREFIX_LEN + 4:]
    if tlv_len > len(value):
        raise TruncatedMessage(f"TLV length {tlv_len} but {len(value)} octets left")
    value = value[:tlv_len]
    if tlv_type == TLV_MANAGEMENT:
        if tlv_len < 2:
            raise MalformedMessage(f"management TLV length {tlv_len}, below 2")
        (management_id,) = struct.unpack_from(">H", value, 0)
        return ManagementMessage(domain, sequence_id, source, action, management_id,
                                 value[2:])
    if tlv_type == TLV_MANAGEMENT_ERROR_STATUS:
        if tlv_len < 8:
            raise TruncatedMessage(f"error status TLV length {tlv_len}, below 8")
        error_id, management_id = struct.unpack_from(">HH", value, 0)
        text = _ptp_text(value, 8) if tlv_len > 8 else ""
        error = ManagementErrorStatus(error_id, management_id, text)
        return ManagementMessage(domain, sequence_id, source, action, management_id, b"",
                                 error)
    raise MalformedMessage(f"tlvType 0x{tlv_type:04x}, not a management TLV")


def _ptp_text(value: bytes, offset: int) -> str:
    """PTPText (clause 5.3.9): a length octet and UTF-8 text; damaged text is replaced."""
    n = value[offset]
    return value[offset + 1:offset + 1 + n].decode("utf-8", "replace")


# -- data sets ----------------------------------------------------------------------


def _need(data: bytes, size: int, name: str) -> None:
    if len(data) < size:
        raise TruncatedMessage(f"{name}: {len(data)} octets, expected {size}")


@dataclass(frozen=True, slots=True)
class ClockQuality:
    """Clause 5.3.7: clockClass, clockAccuracy (Table 6), offsetScaledLogVariance."""

    clock_class: int
    clock_accuracy: int
    offset_scaled_log_variance: int

    FORMAT: ClassVar[str] = ">BBH"

    def encode(self) -> bytes:
        return struct.pack(self.FORMAT, self.clock_class, self.clock_accuracy,
                           self.offset_scaled_log_variance)


@dataclass(frozen=True, slots=True)
class DefaultDataSet:
    """Clause 15.5.3.3.1: 20 octets."""

    management_id: ClassVar[int] = DEFAULT_DATA_SET
    SIZE: ClassVar[int] = 20

    two_step: bool
    slave_only: bool
    number_ports: int
    priority1: int
    quality: ClockQuality
    priority2: int
    clock_identity: bytes
    domain: int

    @classmethod
    def decode(cls, data: bytes) -> DefaultDataSet:
        _need(data, cls.SIZE, "DEFAULT_DATA_SET")
        flags, _r, ports, p1, cc, ca, var, p2 = struct.unpack_from(">BBHBBBHB", data, 0)
        return cls(bool(flags & 1), bool(flags & 2), ports, p1, ClockQuality(cc, ca, var), p2,
                   bytes(data[10:18]), data[18])

    def encode(self) -> bytes:
        flags = int(self.two_step) | int(self.slave_only) << 1
        return (struct.pack(">BBHB", flags, 0, self.number_ports, self.priority1)
                + self.quality.encode() + bytes([self.priority2]) + self.clock_identity
                + bytes([self.domain, 0]))


@dataclass(frozen=True, slots=True)
class CurrentDataSet:
    """Clause 15.5.3.4.1: stepsRemoved, offsetFromMaster, meanPathDelay (TimeInterval)."""

    management_id: ClassVar[int] = CURRENT_DATA_SET
    SIZE: ClassVar[int] = 18

    steps_removed: int
    offset_from_master_scaled: int  # ns * 2**16, slave − master (clause 8.2.2.3)
    mean_path_delay_scaled: int

    @property
    def offset_from_master(self) -> float:
        return scaled_ns_to_seconds(self.offset_from_master_scaled)

    @property
    def mean_path_delay(self) -> float:
        return scaled_ns_to_seconds(self.mean_path_delay_scaled)

    @classmethod
    def decode(cls, data: bytes) -> CurrentDataSet:
        _need(data, cls.SIZE, "CURRENT_DATA_SET")
        return cls(*struct.unpack_from(">Hqq", data, 0))

    def encode(self) -> bytes:
        return struct.pack(">Hqq", self.steps_removed, self.offset_from_master_scaled,
                           self.mean_path_delay_scaled)


@dataclass(frozen=True, slots=True)
class ParentDataSet:
    """Clause 15.5.3.5.1: 32 octets."""

    management_id: ClassVar[int] = PARENT_DATA_SET
    SIZE: ClassVar[int] = 32

    parent_port: PortIdentity
    parent_stats: bool
    observed_offset_scaled_log_variance: int
    observed_phase_change_rate: int
    gm_priority1: int
    gm_quality: ClockQuality
    gm_priority2: int
    gm_identity: bytes

    @property
    def gm_identity_text(self) -> str:
        return clock_identity_text(self.gm_identity)

    @classmethod
    def decode(cls, data: bytes) -> ParentDataSet:
        _need(data, cls.SIZE, "PARENT_DATA_SET")
        stats, _r, var, rate, p1, cc, ca, gvar, p2 = struct.unpack_from(">BBHiBBBHB", data, 10)
        return cls(PortIdentity.decode(data[0:10]), bool(stats & 1), var, rate, p1,
                   ClockQuality(cc, ca, gvar), p2, bytes(data[24:32]))

    def encode(self) -> bytes:
        return (self.parent_port.encode()
                + struct.pack(">BBHiB", int(self.parent_stats), 0,
                              self.observed_offset_scaled_log_variance,
                              self.observed_phase_change_rate, self.gm_priority1)
                + self.gm_quality.encode() + bytes([self.gm_priority2]) + self.gm_identity)


@dataclass(frozen=True, slots=True)
class TimePropertiesDataSet:
    """Clause 15.5.3.6.1: currentUtcOffset and the flag octet (LI61, LI59, UTCV, PTP,
    TTRA, FTRA from bit 0 up), timeSource (Table 7)."""

    management_id: ClassVar[int] = TIME_PROPERTIES_DATA_SET
    SIZE: ClassVar[int] = 4

    current_utc_offset: int
    leap61: bool
    leap59: bool
    utc_offset_valid: bool
    ptp_timescale: bool
    time_traceable: bool
    frequency_traceable: bool
    time_source: int

    @classmethod
    def decode(cls, data: bytes) -> TimePropertiesDataSet:
        _need(data, cls.SIZE, "TIME_PROPERTIES_DATA_SET")
        utc, flags, source = struct.unpack_from(">hBB", data, 0)
        return cls(utc, *(bool(flags >> bit & 1) for bit in range(6)), source)

    def encode(self) -> bytes:
        bits = (self.leap61, self.leap59, self.utc_offset_valid, self.ptp_timescale,
                self.time_traceable, self.frequency_traceable)
        flags = sum(int(b) << i for i, b in enumerate(bits))
        return struct.pack(">hBB", self.current_utc_offset, flags, self.time_source)


@dataclass(frozen=True, slots=True)
class PortDataSet:
    """Clause 15.5.3.7.1: 26 octets."""

    management_id: ClassVar[int] = PORT_DATA_SET
    SIZE: ClassVar[int] = 26

    port_identity: PortIdentity
    port_state: int
    log_min_delay_req_interval: int
    peer_mean_path_delay_scaled: int
    log_announce_interval: int
    announce_receipt_timeout: int
    log_sync_interval: int
    delay_mechanism: int
    log_min_pdelay_req_interval: int
    version_number: int

    @property
    def port_state_name(self) -> str:
        return port_state_name(self.port_state)

    @classmethod
    def decode(cls, data: bytes) -> PortDataSet:
        _need(data, cls.SIZE, "PORT_DATA_SET")
        fields = struct.unpack_from(">BbqbBbBbB", data, 10)
        return cls(PortIdentity.decode(data[0:10]), *fields[:-1], fields[-1] & 0x0F)

    def encode(self) -> bytes:
        return self.port_identity.encode() + struct.pack(
            ">BbqbBbBbB", self.port_state, self.log_min_delay_req_interval,
            self.peer_mean_path_delay_scaled, self.log_announce_interval,
            self.announce_receipt_timeout, self.log_sync_interval, self.delay_mechanism,
            self.log_min_pdelay_req_interval, self.version_number)


@dataclass(frozen=True, slots=True)
class TimeStatusNp:
    """linuxptp TIME_STATUS_NP (tlv.h ``struct time_status_np``): 50 octets.

    ``master_offset`` is in integer ns and is local − master, like ptp4l's log.
    """

    management_id: ClassVar[int] = TIME_STATUS_NP
    SIZE: ClassVar[int] = 50

    master_offset_ns: int
    ingress_time_ns: int
    cumulative_scaled_rate_offset: int
    scaled_last_gm_phase_change: int
    gm_time_base_indicator: int
    last_gm_phase_change: bytes  # ScaledNs, 12 octets, passed through
    gm_present: bool
    gm_identity: bytes

    @property
    def gm_identity_text(self) -> str:
        return clock_identity_text(self.gm_identity)

    @classmethod
    def decode(cls, data: bytes) -> TimeStatusNp:
        _need(data, cls.SIZE, "TIME_STATUS_NP")
        off, ingress, rate, phase, base = struct.unpack_from(">qqiiH", data, 0)
        (present,) = struct.unpack_from(">i", data, 38)
        return cls(off, ingress, rate, phase, base, bytes(data[26:38]), present != 0,
                   bytes(data[42:50]))

    def encode(self) -> bytes:
        return (struct.pack(">qqiiH", self.master_offset_ns, self.ingress_time_ns,
                            self.cumulative_scaled_rate_offset,
                            self.scaled_last_gm_phase_change, self.gm_time_base_indicator)
                + self.last_gm_phase_change + struct.pack(">i", int(self.gm_present))
                + self.gm_identity)


@dataclass(frozen=True, slots=True)
class PortStatsNp:
    """linuxptp PORT_STATS_NP: portIdentity, then 16 rx and 16 tx counters (u64 LE)."""

    management_id: ClassVar[int] = PORT_STATS_NP
    SIZE: ClassVar[int] = 10 + 2 * 16 * 8

    port_identity: PortIdentity
    rx: tuple[int, ...] = field(default=(0,) * 16)
    tx: tuple[int, ...] = field(default=(0,) * 16)

    def named(self) -> dict[tuple[str, str], int]:
        """{(direction, message): count} for the message types of Table 19."""
        out: dict[tuple[str, str], int] = {}
        for index, name in MESSAGE_TYPES.items():
            out[("rx", name)] = self.rx[index]
            out[("tx", name)] = self.tx[index]
        return out

    @classmethod
    def decode(cls, data: bytes) -> PortStatsNp:
        _need(data, cls.SIZE, "PORT_STATS_NP")
        counters = struct.unpack_from("<32Q", data, 10)
        return cls(PortIdentity.decode(data[0:10]), counters[:16], counters[16:])

    def encode(self) -> bytes:
        return self.port_identity.encode() + struct.pack("<32Q", *self.rx, *self.tx)


DataSet = (DefaultDataSet | CurrentDataSet | ParentDataSet | TimePropertiesDataSet
           | PortDataSet | TimeStatusNp | PortStatsNp)

DECODERS: dict[int, type[DataSet]] = {  # type: ignore[valid-type]
    cls.management_id: cls
    for cls in (DefaultDataSet, CurrentDataSet, ParentDataSet, TimePropertiesDataSet,
                PortDataSet, TimeStatusNp, PortStatsNp)
}


def decode_dataset(management_id: int, data: bytes) -> DataSet:
    """Decode the dataField of a RESPONSE for one of the ids above."""
    decoder = DECODERS.get(management_id)
    if decoder is None:
        raise MalformedMessage(f"management id 0x{management_id:04x} is not one we asked for")
    return decoder.decode(bytes(data))


def port_state_name(state: int) -> str:
    return PORT_STATES.get(state, f"UNKNOWN_{state}")
