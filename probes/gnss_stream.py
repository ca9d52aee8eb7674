"""Split a GNSS receiver's byte stream into checked NMEA 0183 sentences and UBX frames.

A u-blox receiver mixes NMEA sentences (``$..*hh\\r\\n``, NMEA 0183 v4.11 section
5.3: XOR checksum of the characters between ``$`` and ``*``) with UBX frames
(u-blox interface description, "UBX frame structure": sync ``B5 62``, class, id,
little-endian payload length, payload, 8-bit Fletcher checksum over class..payload).
Anything else (a login banner, gpsd JSON in front of a capture, Trimble TSIP) is
skipped.  When 4 KiB arrive without one valid frame the stream is declared
unsupported: the receiver speaks a protocol we do not parse.

Frames are parsed with pynmeagps / pyubx2.  Those libraries can raise many kinds
of exception on odd input (pyubx2 1.4 leaks ``UnicodeDecodeError`` on some
non-UBX bytes), so every call into them is wrapped: only ``GnssStreamError``
subclasses leave this module, and ``feed`` never raises at all — it returns the
errors it met as values, because one bad frame must not stop a stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynmeagps import NMEAReader
from pyubx2 import UBXReader
from pyubx2.ubxtypes_core import UBX_MSGIDS

UBX_SYNC = b"\xb5\x62"
UBX_HEADER = 6  # sync(2) class id length(2)
# The longest frames a timing receiver sends (NAV-SAT / NAV-SIG with every signal
# tracked, MON-VER) stay below 4 KiB; a larger length is a corrupted header, and
# waiting for 64 KiB of it would stall the stream for seconds at 115200 Bd.
UBX_MAX_PAYLOAD = 8192
NMEA_MAX_LEN = 128  # 82 by the standard; proprietary sentences run longer
UNSUPPORTED_AFTER = 4096  # bytes without one valid frame


class GnssStreamError(Exception):
    """Base of everything this module reports; ``reason`` is the metric label."""

    reason = "parse_error"

    def __init__(self, detail: str, raw: bytes = b"") -> None:
        super().__init__(detail)
        self.raw = raw


class ChecksumError(GnssStreamError):
    reason = "bad_checksum"


class BadLengthError(GnssStreamError):
    reason = "bad_length"


class TruncatedError(GnssStreamError):
    reason = "truncated"


class FrameParseError(GnssStreamError):
    """The checksum was right but the library could not decode the content."""

    reason = "parse_error"


class UnsupportedStreamError(GnssStreamError):
    reason = "unsupported_stream"


@dataclass(frozen=True, slots=True)
class Frame:
    """One checked frame: ``protocol`` is "nmea" or "ubx"; ``t_ns`` the local
    CLOCK_REALTIME at which the read that delivered its first byte returned."""

    protocol: str
    raw: bytes
    t_ns: int
    message: Any  # pynmeagps.NMEAMessage, pyubx2.UBXMessage, or None when not decoded
    identity: str  # "GPGGA", "PGRME", "NAV-PVT", "UBX-0A-99" for an unknown UBX id


Event = Frame | GnssStreamError
# Which frames to decode with the libraries, by identity: a checksum-checked frame that
# nobody reads is passed on undecoded (pyubx2 takes milliseconds for a NAV-SAT).
DecodeFilter = Callable[[str], bool]


def nmea_identity(line: bytes) -> str:
    comma = line.find(b",")
    star = line.find(b"*")
    end = min(i for i in (comma, star, len(line)) if i >= 0)
    return line[1:end].decode("ascii", "replace")


def ubx_identity(frame: bytes) -> str:
    return UBX_MSGIDS.get(bytes(frame[2:4]), f"UBX-{frame[2]:02X}-{frame[3]:02X}")


def nmea_checksum(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


def ubx_checksum(data: bytes) -> bytes:
    """8-bit Fletcher over class, id, length and payload (u-blox "UBX checksum")."""
    a = b = 0
    for byte in data:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def parse_nmea(line: bytes) -> Any:
    """A checked sentence (without CR LF) to a pynmeagps message, or a typed error."""
    check_nmea(line)
    try:
        msg = NMEAReader.parse(line + b"\r\n", validate=1)
    except Exception as exc:  # noqa: BLE001 - the library's errors are many; wrap them all
        raise FrameParseError(f"NMEA {line[:16]!r}: {type(exc).__name__}: {exc}", line) from exc
    if msg is None:
        raise FrameParseError(f"NMEA {line[:16]!r}: not decoded", line)
    return msg


def check_nmea(line: bytes) -> None:
    """ChecksumError unless the sentence ends in a right ``*hh``."""
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise ChecksumError("NMEA sentence without a checksum", line)
    try:
        want = int(line[star + 1:], 16)
    except ValueError as exc:
        raise ChecksumError("NMEA checksum is not hex", line) from exc
    got = nmea_checksum(line[1:star])
    if got != want:
        raise ChecksumError(f"NMEA checksum {want:02X}, computed {got:02X}", line)


def parse_ubx(frame: bytes) -> Any:
    """A whole UBX frame (sync to checksum) to a pyubx2 message, or a typed error."""
    if len(frame) < UBX_HEADER + 2 or frame[:2] != UBX_SYNC:
        raise TruncatedError("UBX frame shorter than its header", frame)
    length = int.from_bytes(frame[4:6], "little")
    if length > UBX_MAX_PAYLOAD:
        raise BadLengthError(f"UBX payload length {length} exceeds {UBX_MAX_PAYLOAD}", frame)
    if len(frame) != UBX_HEADER + length + 2:
        raise TruncatedError(f"UBX frame of {len(frame)} bytes, header says {length + 8}",
                             frame)
    if ubx_checksum(frame[2:-2]) != frame[-2:]:
        raise ChecksumError(f"UBX checksum mismatch in class 0x{frame[2]:02x} id "
                            f"0x{frame[3]:02x}", frame)
    try:
        return UBXReader.parse(frame, validate=1)
    except Exception as exc:  # noqa: BLE001 - includes the UnicodeDecodeError leak
        raise FrameParseError(f"UBX 0x{frame[2]:02x} 0x{frame[3]:02x}: "
                              f"{type(exc).__name__}: {exc}", frame) from exc


def _printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


class StreamSplitter:
    """Incremental splitter: ``feed`` bytes as they are read, get frames and errors.

    Bytes wait in a buffer scanned from ``_pos``; consumed bytes are dropped once per
    feed.  Read marks (absolute stream offset, t_ns) give each frame the arrival time of
    the read that delivered its first byte.
    """

    def __init__(self, unsupported_after: int = UNSUPPORTED_AFTER,
                 decode: DecodeFilter | None = None) -> None:
        self.unsupported_after = unsupported_after
        self.decode = decode
        self._buf = bytearray()
        self._pos = 0  # scan position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._marks: deque[tuple[int, int]] = deque()
        self.bytes_without_frame = 0
        self.unsupported = False
        self.frames_total = 0
        self.skipped_bytes = 0

    def reset(self) -> None:
        """Forget buffered bytes (the device was reopened)."""
        self._base += len(self._buf)
        self._buf.clear()
        self._pos = 0
        self._marks.clear()
        self.bytes_without_frame = 0
        self.unsupported = False

    def _time_here(self) -> int:
        here = self._base + self._pos
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= here:
            marks.popleft()
        return marks[0][1] if marks else 0

    def _skip(self, n: int) -> None:
        self.skipped_bytes += n
        self._pos += n

    def feed(self, data: bytes, t_ns: int) -> list[Event]:
        """Add bytes read at local time ``t_ns``; return the frames and errors now complete."""
        if data:
            self._marks.append((self._base + len(self._buf), t_ns))
            self._buf.extend(data)
        events: list[Event] = []
        before = self.frames_total
        while self._step(events):
            pass
        if self._pos:
            del self._buf[:self._pos]
            self._base += self._pos
            self._pos = 0
        if self.frames_total != before:
            self.bytes_without_frame = len(self._buf)  # only what is still unexamined
        elif data:
            self.bytes_without_frame += len(data)
        if not self.unsupported and self.bytes_without_frame >= self.unsupported_after:
            self.unsupported = True
            events.append(UnsupportedStreamError(
                f"{self.bytes_without_frame} bytes without one valid NMEA sentence or "
                "UBX frame (not NMEA 0183 or UBX, or a wrong baud rate)"))
        return events

    def _found(self, events: list[Event], frame: Frame, size: int) -> None:
        self._pos += size
        self.frames_total += 1
        self.unsupported = False
        events.append(frame)

    def _step(self, events: list[Event]) -> bool:
        """Take at most one frame or one skip off the buffer; False when more bytes are needed."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return False
        dollar = buf.find(b"$", pos)
        sync = buf.find(b"\xb5", pos)
        # A lone 0xB5 at the very end may be the first half of a sync.
        while sync >= 0 and sync + 1 < len(buf) and buf[sync + 1] != 0x62:
            sync = buf.find(b"\xb5", sync + 1)
        starts = [i for i in (dollar, sync) if i >= 0]
        if not starts:
            self._skip(len(buf) - pos)
            return False
        start = min(starts)
        if start > pos:
            self._skip(start - pos)
        if buf[start] == 0x24:
            return self._step_nmea(events)
        return self._step_ubx(events)

    def _step_nmea(self, events: list[Event]) -> bool:
        buf, pos = self._buf, self._pos
        end = -1
        for i in range(pos + 1, min(len(buf), pos + NMEA_MAX_LEN + 2)):
            byte = buf[i]
            if byte in (0x0D, 0x0A):
                end = i
                break
            if byte == 0x24 or not _printable(byte):
                self._skip(i - pos if byte == 0x24 else 1)  # not a sentence: resync
                return True
        if end < 0:
            if len(buf) - pos >= NMEA_MAX_LEN + 2:
                self._skip(1)
                return True
            return False  # wait for the end of the line
        line = bytes(buf[pos:end])
        size = end - pos
        t_ns = self._time_here()
        if b"*" not in line[1:] or len(line) < 6:
            self._skip(size)  # "$" plus text: not a sentence
            return True
        identity = nmea_identity(line)
        try:
            if self.decode is None or self.decode(identity):
                message = parse_nmea(line)
            else:
                check_nmea(line)
                message = None
        except ChecksumError as exc:
            self._skip(size)
            events.append(exc)
            return True
        except FrameParseError as exc:
            # The checksum proves a receiver sent it: the stream is supported.
            self._pos += size
            self.frames_total += 1
            events.append(exc)
            return True
        self._found(events, Frame("nmea", line, t_ns, message, identity), size)
        return True

    def _step_ubx(self, events: list[Event]) -> bool:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < UBX_HEADER:
            return False
        length = int.from_bytes(buf[pos + 4:pos + 6], "little")
        if length > UBX_MAX_PAYLOAD:
            events.append(BadLengthError(
                f"UBX class 0x{buf[pos + 2]:02x} id 0x{buf[pos + 3]:02x} claims {length} "
                f"payload bytes (more than {UBX_MAX_PAYLOAD}): resynchronising",
                bytes(buf[pos:pos + UBX_HEADER])))
            self._skip(2)
            return True
        total = UBX_HEADER + length + 2
        if len(buf) - pos < total:
            return False
        raw = bytes(buf[pos:pos + total])
        t_ns = self._time_here()
        if ubx_checksum(raw[2:-2]) != raw[-2:]:
            # A truncated frame runs into the next one and fails here; resync just
            # past this sync so the frame that follows is still found.
            events.append(ChecksumError(
                f"UBX class 0x{raw[2]:02x} id 0x{raw[3]:02x} length {length}: checksum "
                "mismatch (truncated or corrupted)", raw[:UBX_HEADER]))
            self._skip(2)
            return True
        identity = ubx_identity(raw)
        try:
            message = parse_ubx(raw) if self.decode is None or self.decode(identity) else None
        except GnssStreamError as exc:
            self._pos += total
            self.frames_total += 1
            events.append(exc)
            return True
        self._found(events, Frame("ubx", raw, t_ns, message, identity), total)
        return True

    def flush(self) -> list[Event]:
        """End of input: what is left in the buffer is a truncated frame, if anything."""
        events: list[Event] = []
        if self._buf[:2] == UBX_SYNC:
            events.append(TruncatedError(
                f"stream ended inside a UBX frame ({len(self._buf)} bytes)", bytes(self._buf)))
        self.reset()
        return events


def split_bytes(data: bytes, t_ns: int = 0, decode: DecodeFilter | None = None) -> list[Event]:
    """Split a whole byte string (a capture) at once."""
    splitter = StreamSplitter(decode=decode)
    return [*splitter.feed(data, t_ns), *splitter.flush()]
