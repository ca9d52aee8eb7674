"""NTP packet codec: timestamp arithmetic in integer ns, and every reply check."""

from __future__ import annotations

import contextlib
import struct

import ntplib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from timemon.probes import ntp_packet as pkt

NOW_NS = 1_795_000_000_123_456_789  # 2026-11-18


def reply_bytes(origin: int, *, leap: int = 0, stratum: int = 2, mode: int = 4, version: int = 4,
                refid: bytes = b"\xc0\x00\x02\x01", receive: int | None = None,
                transmit: int | None = None) -> bytes:
    t2 = pkt.unix_ns_to_ntp(NOW_NS) if receive is None else receive
    t3 = pkt.unix_ns_to_ntp(NOW_NS + 1000) if transmit is None else transmit
    return pkt.NTP_PACKET.pack((leap << 6) | (version << 3) | mode, stratum, 6, -23,
                               0x00010000 // 4, 0x00010000 // 8, refid, t2, origin, t2, t3)


def test_ntp_unix_conversion_matches_ntplib_at_one_second_resolution() -> None:
    value = pkt.unix_ns_to_ntp(NOW_NS)
    seconds = ntplib._to_time(value >> 32, value & 0xFFFFFFFF)
    assert ntplib.ntp_to_system_time(seconds) == pytest.approx(NOW_NS / 1e9, abs=1e-6)


@given(st.integers(min_value=0, max_value=(2**32 - 1) * 10**9))
def test_round_trip_is_exact_to_a_nanosecond(offset_ns: int) -> None:
    unix_ns = offset_ns - pkt.NTP_UNIX_DELTA * 10**9 + 10**9  # anywhere in era 0 (1900-2036)
    back = pkt.ntp_to_unix_ns(pkt.unix_ns_to_ntp(unix_ns), pivot_unix_ns=unix_ns)
    assert abs(back - unix_ns) <= 1


def test_era_rollover_in_2036_uses_the_pivot() -> None:
    after_rollover = (2**32 - pkt.NTP_UNIX_DELTA + 5) * 10**9  # 2036-02-07 06:28:21 UTC
    wire = pkt.unix_ns_to_ntp(after_rollover)
    assert wire >> 32 == 5  # seconds field wrapped into era 1
    assert pkt.ntp_to_unix_ns(wire, pivot_unix_ns=after_rollover - 10**9) == after_rollover


def test_offset_sign_is_local_minus_reference() -> None:
    # The server's clock is 1 ms ahead of ours: the local clock is 1 ms behind (−1 ms).
    ex = pkt.Exchange(t1_ns=0, t2_ns=1_000_000 + 50, t3_ns=1_000_000 + 60, t4_ns=110)
    assert ex.offset_ns == -1_000_000
    assert ex.delay_ns == 100


def test_parse_accepts_a_matching_reply() -> None:
    nonce = pkt.new_nonce()
    reply = pkt.parse_reply(reply_bytes(nonce), nonce, NOW_NS)
    assert reply.stratum == 2 and reply.leap == 0
    assert reply.refid_text == "192.0.2.1"
    assert reply.root_delay == pytest.approx(0.25) and reply.root_dispersion == pytest.approx(0.125)
    assert abs(reply.receive_ns - NOW_NS) <= 1


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (reply_bytes(1)[:47], pkt.TruncatedReply, "truncated"),
        (reply_bytes(1, mode=3), pkt.BadMode, "bad_mode"),
        (reply_bytes(1, version=1), pkt.BadVersion, "bad_version"),
        (reply_bytes(2), pkt.BadOrigin, "bad_origin"),
        (reply_bytes(1, leap=3), pkt.Unsynchronised, "unsynchronised"),
        (reply_bytes(1, stratum=16), pkt.Unsynchronised, "unsynchronised"),
        (reply_bytes(1, transmit=0), pkt.Unsynchronised, "unsynchronised"),
        (reply_bytes(1, receive=0), pkt.BadTimestamps, "bad_timestamps"),
    ],
)
def test_bad_replies_raise_typed_errors(data: bytes, error: type, reason: str) -> None:
    with pytest.raises(error) as info:
        pkt.parse_reply(data, 1, NOW_NS)
    assert info.value.reason == reason


@pytest.mark.parametrize(("code", "reason"), [(b"RATE", "kod_rate"), (b"DENY", "kod_deny"),
                                              (b"RSTR", "kod_rstr"), (b"XYZW", "kod_other")])
def test_kiss_of_death_with_matching_origin(code: bytes, reason: str) -> None:
    with pytest.raises(pkt.KissOfDeath) as info:
        pkt.parse_reply(reply_bytes(7, stratum=0, leap=3, refid=code), 7, NOW_NS)
    assert info.value.reason == reason
    assert info.value.code == code.decode()


def test_kiss_of_death_with_wrong_origin_is_only_a_bad_origin() -> None:
    with pytest.raises(pkt.BadOrigin):
        pkt.parse_reply(reply_bytes(8, stratum=0, refid=b"DENY"), 7, NOW_NS)


def test_request_carries_only_the_nonce() -> None:
    request = pkt.build_request(0x1122334455667788)
    assert len(request) == 48
    fields = pkt.NTP_PACKET.unpack(request)
    assert fields[0] == 0x23  # LI 0, VN 4, mode 3
    assert fields[8] == 0 and fields[9] == 0  # no origin/receive: nothing about our clock
    assert fields[10] == 0x1122334455667788


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=2**64 - 1))
def test_decoder_raises_only_its_own_errors(data: bytes, nonce: int) -> None:
    with contextlib.suppress(pkt.NtpReplyError):
        pkt.parse_reply(data, nonce, NOW_NS)


def test_refid_text() -> None:
    assert pkt.refid_text(b"GPS\0", 1) == "GPS"
    assert pkt.refid_text(b"\x7f\x7f\x01\x01", 1) == "127.127.1.1"
    assert pkt.refid_text(struct.pack("!I", 0xC0000201), 3) == "192.0.2.1"
