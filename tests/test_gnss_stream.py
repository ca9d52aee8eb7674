"""The stream splitter and epoch decoder on bad input: only typed errors, and recovery."""

from __future__ import annotations

import contextlib
import io
import os

from gnss_support import capture_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyubx2 import ERR_IGNORE, UBXMessage, UBXReader
from timemon.probes.gnss_decode import EpochDecoder, GnssDecodeError, wanted
from timemon.probes.gnss_stream import (
    BadLengthError,
    ChecksumError,
    Frame,
    FrameParseError,
    GnssStreamError,
    StreamSplitter,
    TruncatedError,
    UnsupportedStreamError,
    parse_ubx,
    split_bytes,
    ubx_checksum,
)

GGA = b"$GPGGA,113258,3238.9148,N,10822.4466,W,2,08,1.1,1577.4,M,-24.6,M,,*4D\r\n"
RMC = b"$GPRMC,113258,A,3238.9148,N,10822.4466,W,005.3,247.1,181022,009.3,E*6B\r\n"


def frames(events: list) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def errors(events: list) -> list[GnssStreamError]:
    return [e for e in events if isinstance(e, GnssStreamError)]


def ubx_frame(cls: int, msg_id: int, payload: bytes) -> bytes:
    body = bytes((cls, msg_id)) + len(payload).to_bytes(2, "little") + payload
    return b"\xb5\x62" + body + ubx_checksum(body)


def test_frames_agree_with_pyubx2_on_every_ubx_capture() -> None:
    """An independent count: pyubx2's own reader over the same bytes (incl. the ZED-F9T's
    '#' bytes at line starts inside binary data, which are data, not comments)."""
    for name in ("ublox-zed-f9t-ubx_nmea_l5.log", "u-blox-m8t-time.log",
                 "ublox8-uniqid-monhw.log"):
        body = capture_body(name)
        ours = [f.raw for f in frames(split_bytes(body))]
        theirs = [raw for raw, parsed in UBXReader(io.BytesIO(body), protfilter=3,
                                                   quitonerror=ERR_IGNORE) if parsed is not None]
        assert [r.rstrip(b"\r\n") if r[:1] == b"$" else r for r in theirs] == ours, name


def test_f9t_hash_bytes_inside_binary_are_kept() -> None:
    body = capture_body("ublox-zed-f9t-ubx_nmea_l5.log")
    at_line_start = [i for i in range(1, len(body)) if body[i - 1] == 0x0A and body[i] == 0x23]
    assert at_line_start, "the capture should have '#' bytes at line starts in binary data"
    raws = [f.raw for f in frames(split_bytes(body))]
    assert any(b"\n#" in raw for raw in raws)


def test_leading_text_is_skipped() -> None:
    junk = b'login: root\r\n{"class":"VERSION","release":"3.22"}\r\n' * 20
    events = split_bytes(junk + GGA + RMC)
    assert [f.identity for f in frames(events)] == ["GPGGA", "GPRMC"]
    assert not errors(events)


def test_bad_nmea_checksum_is_a_typed_error_and_the_next_sentence_is_read() -> None:
    bad = GGA.replace(b"*4D", b"*4E")
    events = split_bytes(bad + RMC)
    assert [type(e) for e in errors(events)] == [ChecksumError]
    assert errors(events)[0].reason == "bad_checksum"
    assert [f.identity for f in frames(events)] == ["GPRMC"]


def test_sentence_without_checksum_is_refused() -> None:
    events = split_bytes(b"$GPGGA,113258,3238.9148,N\r\n" + RMC)
    assert [f.identity for f in frames(events)] == ["GPRMC"]


def test_bad_ubx_checksum_then_recovery() -> None:
    good = ubx_frame(0x01, 0x61, (1234).to_bytes(4, "little"))  # NAV-EOE
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    events = split_bytes(bytes(bad) + good)
    assert [e.reason for e in errors(events)] == ["bad_checksum"]
    assert [f.identity for f in frames(events)] == ["NAV-EOE"]


def test_truncated_ubx_frame_followed_by_a_good_one() -> None:
    """A frame cut short (like the u-blox 8 capture's MON-HW) runs into the next one."""
    good = ubx_frame(0x01, 0x61, (1234).to_bytes(4, "little"))
    monhw = UBXMessage("MON", "MON-HW", 0, aStatus=2, jamInd=10).serialize()
    events = split_bytes(monhw[:6 + 35] + good + GGA)
    assert [f.identity for f in frames(events)] == ["NAV-EOE", "GPGGA"]
    assert all(isinstance(e, ChecksumError) for e in errors(events))


def test_truncated_at_end_of_stream() -> None:
    good = ubx_frame(0x01, 0x61, (1234).to_bytes(4, "little"))
    splitter = StreamSplitter()
    assert frames(splitter.feed(good[:-3], 0)) == []
    assert [type(e) for e in splitter.flush()] == [TruncatedError]


def test_ubx_length_65535_does_not_stall_the_stream() -> None:
    header = b"\xb5\x62\x01\x07\xff\xff"
    events = split_bytes(header + b"\x00" * 100 + GGA)
    assert [type(e) for e in errors(events)] == [BadLengthError]
    assert [f.identity for f in frames(events)] == ["GPGGA"]


def test_short_ubx_payload_is_refused_before_decoding() -> None:
    """pyubx2 pads a 3-byte NAV-PVT with zeros (it would read as "no fix"): refused."""
    raw = ubx_frame(0x01, 0x07, b"\x01\x02\x03")
    events = split_bytes(raw + GGA)
    assert [f.identity for f in frames(events)] == ["NAV-PVT", "GPGGA"]
    decoder = EpochDecoder()
    try:
        decoder.feed(frames(events)[0])
    except GnssDecodeError as exc:
        assert exc.reason == "bad_length"
    else:
        raise AssertionError("a 3-byte NAV-PVT was decoded")
    decoder.feed(frames(events)[1])
    epoch = decoder.flush()
    assert epoch is not None and epoch.fix_mode == 3  # from the GGA, not the zeros


def test_library_exceptions_are_wrapped(monkeypatch) -> None:
    """pyubx2 1.4 can leak UnicodeDecodeError on odd bytes: it must come out typed."""
    import timemon.probes.gnss_stream as gs

    def leak(*_args, **_kwargs):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(gs.UBXReader, "parse", staticmethod(leak))
    raw = ubx_frame(0x0A, 0x04, b"\xff" * 40)
    try:
        parse_ubx(raw)
    except FrameParseError as exc:
        assert "UnicodeDecodeError" in str(exc)
    else:
        raise AssertionError("no error")
    events = split_bytes(raw + GGA)
    assert [type(e) for e in errors(events)] == [FrameParseError]
    assert [f.identity for f in frames(events)] == ["GPGGA"]


def test_random_bytes_become_unsupported_after_4_kib() -> None:
    splitter = StreamSplitter()
    data = os.urandom(4096).replace(b"$", b"#").replace(b"\xb5", b"\x00")
    events = splitter.feed(data[:2048], 1)
    assert not any(isinstance(e, UnsupportedStreamError) for e in events)
    events = splitter.feed(data[2048:], 2)
    unsupported = [e for e in events if isinstance(e, UnsupportedStreamError)]
    assert len(unsupported) == 1 and unsupported[0].reason == "unsupported_stream"
    # Reported once; then a receiver that starts speaking NMEA brings it back.
    assert not errors(splitter.feed(data[:1000], 3))
    assert [f.identity for f in frames(splitter.feed(GGA, 4))] == ["GPGGA"]
    assert not splitter.unsupported


def test_a_healthy_stream_never_becomes_unsupported() -> None:
    splitter = StreamSplitter()
    for i in range(200):
        events = splitter.feed(GGA + RMC, i)
        assert not errors(events)


def test_arrival_time_is_the_read_that_delivered_the_first_byte() -> None:
    splitter = StreamSplitter()
    assert splitter.feed(GGA[:10], 100) == []
    got = frames(splitter.feed(GGA[10:] + RMC[:5], 200) + splitter.feed(RMC[5:], 300))
    assert [(f.identity, f.t_ns) for f in got] == [("GPGGA", 100), ("GPRMC", 200)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=10))
def test_fuzz_random_bytes_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    splitter = StreamSplitter()
    decoder = EpochDecoder()
    pos = 0
    for cut in [*cuts, len(data)]:
        for event in splitter.feed(data[pos:pos + cut], pos):
            assert isinstance(event, (Frame, GnssStreamError))
            if isinstance(event, Frame):
                with contextlib.suppress(GnssDecodeError):
                    decoder.feed(event)
        pos += cut
    splitter.flush()
    decoder.flush()


_CAPTURES = [capture_body(n) for n in ("ublox-zed-f9t-ubx_nmea_l5.log", "ublox8-uniqid-monhw.log",
                                       "quectel-L70.log")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(_CAPTURES))), st.integers(0, 10**6),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=20),
       st.lists(st.integers(1, 2000), min_size=1, max_size=30))
def test_fuzz_mutated_captures(which: int, start: int, flips: list[tuple[int, int]],
                               cuts: list[int]) -> None:
    """Real streams with corrupted bytes, fed in arbitrary read sizes: only typed errors,
    and every frame that comes out has a valid checksum."""
    body = bytearray(_CAPTURES[which][start % 8000:][:9000])
    for at, value in flips:
        if body:
            body[at % len(body)] = value
    splitter = StreamSplitter(decode=wanted)
    decoder = EpochDecoder()
    pos, i = 0, 0
    while pos < len(body):
        cut = cuts[i % len(cuts)]
        for event in splitter.feed(bytes(body[pos:pos + cut]), pos):
            if isinstance(event, Frame):
                if event.protocol == "ubx":
                    assert ubx_checksum(event.raw[2:-2]) == event.raw[-2:]
                with contextlib.suppress(GnssDecodeError):
                    decoder.feed(event)
            else:
                assert isinstance(event, GnssStreamError)
        pos += cut
        i += 1


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40))
def test_read_sizes_do_not_change_the_frames(cuts: list[int]) -> None:
    body = _CAPTURES[0]
    whole = [f.raw for f in frames(split_bytes(body, decode=wanted))]
    splitter = StreamSplitter(decode=wanted)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(body):
        cut = cuts[i % len(cuts)]
        got += [f.raw for f in frames(splitter.feed(body[pos:pos + cut], pos))]
        pos += cut
        i += 1
    assert got == whole
