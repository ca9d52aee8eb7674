"""NTPv4 packet encoding and checked decoding (RFC 5905 section 7.3).

Every check a client must make on a reply lives here, and each failure raises
a typed ``NtpReplyError`` whose ``reason`` is the label value exported in
``timemon_probe_errors_total{reason}``.  Nothing here does I/O.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass

import ntplib

NTP_PACKET = struct.Struct("!BBbbII4sQQQQ")
NTP_PACKET_SIZE = NTP_PACKET.size  # 48 bytes, without extension fields or MAC
NTP_PORT = 123

# Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_DELTA = 2_208_988_800
NS = 1_000_000_000
ERA_SECONDS = 1 << 32

MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_UNSYNCHRONISED = 3
STRATUM_UNSYNCHRONISED = 16


class NtpReplyError(Exception):
    """A reply that must not become a sample.  ``reason`` is the metric label."""

    reason = "bad_reply"


class TruncatedReply(NtpReplyError):
    reason = "truncated"


class BadMode(NtpReplyError):
    reason = "bad_mode"


class BadVersion(NtpReplyError):
    reason = "bad_version"


class BadOrigin(NtpReplyError):
    """The origin timestamp does not echo our nonce: stale, replayed or spoofed."""

    reason = "bad_origin"


class Unsynchronised(NtpReplyError):
    """LI=3, stratum 16, or a zero transmit timestamp (RFC 5905 section 8)."""

    reason = "unsynchronised"


class BadTimestamps(NtpReplyError):
    """Server timestamps that cannot be right (receive after transmit, zero receive)."""

    reason = "bad_timestamps"


class KissOfDeath(NtpReplyError):
    """Stratum 0 with a kiss code in the reference id (RFC 5905 section 7.4)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"kiss-o'-death {code}")
        self.code = code
        self.reason = {"RATE": "kod_rate", "DENY": "kod_deny", "RSTR": "kod_rstr"}.get(
            code, "kod_other"
        )


def ntp_to_unix_ns(value: int, pivot_unix_ns: int) -> int:
    """Convert a 64-bit NTP timestamp to Unix ns, choosing the era nearest ``pivot``.

    The 32-bit seconds field wraps every 136 years (era 1 starts in 2036); the
    era is resolved against the local clock as RFC 5905 section 6 suggests.
    """
    seconds = value >> 32
    fraction = value & 0xFFFFFFFF
    pivot_ntp_seconds = pivot_unix_ns // NS + NTP_UNIX_DELTA
    era = (pivot_ntp_seconds - seconds + ERA_SECONDS // 2) // ERA_SECONDS
    total_seconds = era * ERA_SECONDS + seconds - NTP_UNIX_DELTA
    # Round the 2^-32 s fraction to the nearest nanosecond, in integers.
    return total_seconds * NS + ((fraction * NS + (1 << 31)) >> 32)


def unix_ns_to_ntp(unix_ns: int) -> int:
    seconds, rem = divmod(unix_ns, NS)
    fraction = (rem << 32) // NS
    return (((seconds + NTP_UNIX_DELTA) % ERA_SECONDS) << 32) | fraction


def short_format_seconds(value: int) -> float:
    """NTP short format (16.16 fixed point) to seconds."""
    return value / 65536.0


def new_nonce() -> int:
    """A random 64-bit transmit timestamp for a request (RFC 5905 section 15 / 9.1).

    The client's real send time never goes on the wire; the server echoes the
    nonce in its origin field, which is what binds a reply to the request.
    """
    while True:
        try:
            nonce = _NONCES.pop()  # atomic: safe if two threads draw at once
        except IndexError:  # one getrandom call per 512 nonces: ~0.2 us each, not ~1.5
            _NONCES.extend(_NONCE_BLOCK.unpack(os.urandom(_NONCE_BLOCK.size)))
            continue
        if nonce:
            return nonce


_NONCE_BLOCK = struct.Struct("<512Q")
_NONCES: list[int] = []


def build_request(nonce: int, version: int = 4, interleave: tuple[int, int] | None = None) -> bytes:
    """A mode-3 request whose transmit field is ``nonce``.

    ``interleave = (previous server receive timestamp, cookie)`` asks for the
    interleaved client/server mode (chrony's ``xleave``; Mills' interleaved
    modes, as refined in Lichvar's draft-ietf-ntp-interleaved-modes): origin
    carries the server's receive timestamp of our previous request, receive a
    second random cookie.  A server that supports it answers with origin =
    cookie and, as transmit, the kernel stamp of its *previous* reply; any
    other server ignores both fields and answers in basic mode (origin = nonce).
    """
    first = (0 << 6) | (version << 3) | MODE_CLIENT
    origin, receive = interleave if interleave else (0, 0)
    return NTP_PACKET.pack(first, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, origin, receive, nonce)


@dataclass(slots=True)
class ServerReply:
    """The fields of a checked mode-4 reply; timestamps in Unix integer ns.

    Not frozen, like the other records made at every NTP poll (``Exchange``,
    ``Interleave``, ``Measurement``, ``Received``, ``FilterEntry``, ``FilterPick``,
    ``Sample`` and the store's ``_Pending``); nothing changes one once it is made.
    A frozen dataclass sets each field through ``object.__setattr__``: this one
    took 3.9 us to make with keyword arguments, 0.6 us unfrozen and positional.
    At 1,000 polls a second, unfreezing them (and making them positionally) took
    the event loop's thread from 18.1-20.7 % of a core to 16.6-17.1 %
    (bench/scale.py, three pairs).
    """

    leap: int
    version: int
    stratum: int
    poll: int
    precision: int
    root_delay: float  # seconds
    root_dispersion: float  # seconds
    refid: bytes
    reference_ns: int
    receive_ns: int  # T2: server receive time
    transmit_ns: int  # T3: server transmit time (of its previous reply when interleaved)
    receive_wire: int = 0  # the receive field as sent, echoed in the next interleaved request
    interleaved: bool = False  # origin matched the interleave cookie, not the nonce

    @property
    def refid_text(self) -> str:
        """Refid as ntpq prints it: a 4-letter code at stratum 0-1, else an IPv4 address."""
        return refid_text(self.refid, self.stratum)

    @property
    def leap_text(self) -> str:
        return ntplib.leap_to_text(self.leap)


@functools.lru_cache(maxsize=4096)  # asked for every accepted sample (the store's notes)
def refid_text(refid: bytes, stratum: int) -> str:
    """A kiss or reference-clock code at stratum 0-1 when printable, else a dotted quad
    (an IPv4 address, or the hash of an IPv6 one; chrony's local clock is 127.127.1.1)."""
    code = refid.rstrip(b"\0")
    if stratum <= 1 and code and all(32 < b < 127 for b in code):
        return code.decode("ascii")
    return ".".join(str(b) for b in refid)


def parse_reply(data: bytes, nonce: int, pivot_unix_ns: int,
                cookie: int | None = None) -> ServerReply:
    """Check a reply to the request carrying ``nonce`` (and ``cookie``) and decode it.

    Order matters: a Kiss-o'-Death is believed only when its origin matches
    (RFC 5905 section 7.4: an unauthenticated KoD with a wrong origin is an
    attack, so it is dropped as bad_origin and never changes polling).
    """
    if len(data) < NTP_PACKET_SIZE:
        raise TruncatedReply(f"{len(data)} bytes, need {NTP_PACKET_SIZE}")
    (first, stratum, poll, precision, root_delay, root_disp, refid,
     reference, origin, receive, transmit) = NTP_PACKET.unpack_from(data)
    leap, version, mode = first >> 6, (first >> 3) & 7, first & 7
    if mode != MODE_SERVER:
        raise BadMode(f"mode {mode}, expected 4")
    if version not in (3, 4):
        raise BadVersion(f"version {version}")
    interleaved = cookie is not None and origin == cookie
    if origin != nonce and not interleaved:
        raise BadOrigin("origin timestamp does not match the request")
    if stratum == 0:
        raise KissOfDeath(refid.rstrip(b"\0").decode("ascii", "replace") or "????")
    if leap == LEAP_UNSYNCHRONISED or stratum >= STRATUM_UNSYNCHRONISED or transmit == 0:
        raise Unsynchronised(f"leap {leap}, stratum {stratum}, transmit {transmit:#x}")
    if receive == 0:
        raise BadTimestamps("zero receive timestamp")
    receive_ns = ntp_to_unix_ns(receive, pivot_unix_ns)
    transmit_ns = ntp_to_unix_ns(transmit, pivot_unix_ns)
    if transmit_ns < receive_ns and not interleaved:
        raise BadTimestamps("server transmit precedes its receive")
    # Positional: keyword arguments cost more (see ServerReply).
    return ServerReply(
        leap, version, stratum, poll, precision,
        short_format_seconds(root_delay), short_format_seconds(root_disp), refid,
        ntp_to_unix_ns(reference, pivot_unix_ns) if reference else 0,
        receive_ns, transmit_ns, receive, interleaved,
    )


@dataclass(slots=True)
class Exchange:
    """One request/reply: the four timestamps of RFC 5905 section 8, in Unix ns.
    Not frozen: see ``ServerReply``."""

    t1_ns: int  # client transmit (kernel stamp when available)
    t2_ns: int  # server receive
    t3_ns: int  # server transmit
    t4_ns: int  # client receive (kernel stamp)

    @property
    def offset_ns(self) -> float:
        """Local − reference (ITU-T G.810 time error; DESIGN.md's sign).

        RFC 5905's theta = ((T2 − T1) + (T3 − T4)) / 2 is reference − local:
        this is the one place where it is negated.
        """
        return -((self.t2_ns - self.t1_ns) + (self.t3_ns - self.t4_ns)) / 2

    @property
    def delay_ns(self) -> int:
        """Round-trip delay delta = (T4 − T1) − (T3 − T2)."""
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)
