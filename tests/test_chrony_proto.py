"""chrony's command protocol codec, on replies captured from chronyd 4.3, and fuzzed."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timemon.probes import chrony_proto as cp

# Replies of Debian's chronyd 4.3 (a client of a loopback chronyd), and what
# ``chronyc -h SOCKET -c ...`` printed a few milliseconds later.
TRACKING = bytes.fromhex(
    "060200000021000500000000000000000102030400000000000000007f0000017f00000100000000000000"
    "00000000000001000000020000000000006b0a9fd40a2013eadd203386cd5838f6d0e2262ff1001980ed"
    "4789abf8b74950e0f38128dc90c6ff0081829b")
# 7F000001,127.0.0.1,2,1795858388.169874410,-0.000001667,-0.000000005,0.000000026,-0.002,
# -0.000,0.022,0.000007257,0.000001089,0.3,Normal
SOURCE_DATA = bytes.fromhex(
    "06020000000f000300000000000000000000000500000000000000007f00000100000000000000000000"
    "000000010000fffe000100000000000000ff00000000dcbd83f3dcbe2bb9e0b54125")
# ^,*,127.0.0.1,1,-2,377,0,0.000001417,0.000001412,0.000005402
SOURCESTATS = bytes.fromhex(
    "060200000022000600000000000000000000000600000000000000007f0000017f000001000000000000"
    "00000000000000010000000000400000001c00000013d6feb105ed4789abf8ac1be4c11af5a6e083123e")
# 127.0.0.1,64,28,19,-0.000,0.021,-0.000000000,0.000000237
SERVER_STATS3 = bytes.fromhex(
    "060200000036001800000000000000000000000700000000000000000000000000000000000000560000"
    "000000000000000000000000000000000000000000000000000000000000")
AUTH_DATA = bytes.fromhex(
    "06020000004300140000000000000000000000080000000000000000000000000000000000000000ffff"
    "ffff0000000000000000")
SOURCE_NAME = bytes.fromhex(
    "060200000041001300000000000000000000000900000000000000003132372e302e302e31").ljust(
    28 + 256, b"\0")
NO_SUCH_SOURCE = bytes.fromhex(
    "06020000000f000100040000000000000000000a0000000000000000")
VECTORS = (TRACKING, SOURCE_DATA, SOURCESTATS, SERVER_STATS3, AUTH_DATA, SOURCE_NAME)


def test_tracking_decodes_to_what_chronyc_printed() -> None:
    reply = cp.decode_reply(TRACKING)
    assert (reply.command, reply.reply, reply.sequence) == (cp.REQ_TRACKING, cp.RPY_TRACKING,
                                                            0x01020304)
    t = reply.report
    assert isinstance(t, cp.Tracking)
    assert f"{t.ref_id:08X}" == "7F000001" and t.name == "127.0.0.1" and t.stratum == 2
    assert t.ref_time_ns == 1795858388_169874410
    printed = {"current_correction": -0.000001667, "last_offset": -0.000000005,
               "rms_offset": 0.000000026, "root_delay": 0.000007257}
    for field, value in printed.items():
        assert getattr(t, field) == pytest.approx(value, abs=0.6e-9), field
    assert t.freq_ppm == pytest.approx(-0.002, abs=0.6e-3)
    assert t.skew_ppm == pytest.approx(0.022, abs=0.6e-3)
    assert t.last_update_interval == pytest.approx(0.3, abs=0.06)
    # root dispersion grows between the two reads: chronyc's is a little later
    assert 0 < t.root_dispersion <= 0.000001089 + 0.6e-9
    assert t.leap_status == 0 and t.leap_text == "Normal"


def test_sources_and_sourcestats_decode_to_what_chronyc_printed() -> None:
    d = cp.decode_reply(SOURCE_DATA).report
    assert isinstance(d, cp.SourceData)
    assert (d.mode_char, d.state_char, d.name, d.stratum, d.poll, f"{d.reachability:o}",
            d.since_sample) == ("^", "*", "127.0.0.1", 1, -2, "377", 0)
    assert d.latest_meas == pytest.approx(1.417e-6, abs=0.6e-9)
    assert d.orig_latest_meas == pytest.approx(1.412e-6, abs=0.6e-9)
    assert d.latest_meas_err == pytest.approx(5.402e-6, abs=0.6e-9)
    s = cp.decode_reply(SOURCESTATS).report
    assert isinstance(s, cp.SourceStats)
    assert (s.name, s.n_samples, s.n_runs, s.span_seconds) == ("127.0.0.1", 64, 28, 19)
    assert s.resid_freq_ppm == pytest.approx(-0.000, abs=0.6e-3)
    assert s.skew_ppm == pytest.approx(0.021, abs=0.6e-3)
    assert s.est_offset == pytest.approx(0.0, abs=0.6e-9)
    assert s.sd == pytest.approx(0.237e-6, abs=0.6e-9)


def test_serverstats_authdata_and_name() -> None:
    stats = cp.decode_reply(SERVER_STATS3).report
    assert isinstance(stats, cp.ServerStats)
    assert stats.counters["cmd_hits"] == 86 and stats.counters["ntp_hits"] == 0
    assert set(stats.counters) == set(cp.SERVER_STATS_FIELDS[:11])
    auth = cp.decode_reply(AUTH_DATA).report
    assert isinstance(auth, cp.AuthData)
    assert auth.mode_name == "none" and auth.last_ke_ago == 0xFFFFFFFF
    assert cp.decode_reply(SOURCE_NAME).report == "127.0.0.1"


def test_status_version_and_truncation_errors() -> None:
    with pytest.raises(cp.ChronyStatusError) as err:
        cp.decode_reply(NO_SUCH_SOURCE)
    assert err.value.reason == "no_such_source" and err.value.command == cp.REQ_SOURCE_DATA
    with pytest.raises(cp.ChronyBadVersion, match="version 5"):
        cp.decode_reply(bytes([5]) + TRACKING[1:])
    with pytest.raises(cp.ChronyBadVersion):
        cp.decode_reply(bytes([7]) + TRACKING[1:])
    with pytest.raises(cp.ChronyMalformed, match="not a reply"):
        cp.decode_reply(TRACKING[:1] + b"\x01" + TRACKING[2:])
    for cut in range(len(TRACKING)):
        with pytest.raises(cp.ChronyTruncated):
            cp.decode_reply(TRACKING[:cut])
    unknown = bytearray(TRACKING)
    unknown[6:8] = (99).to_bytes(2, "big")
    with pytest.raises(cp.ChronyMalformed, match="reply code 99"):
        cp.decode_reply(bytes(unknown))


def test_request_layout_and_padding() -> None:
    req = cp.build_request(cp.REQ_TRACKING, 0xDEADBEEF)
    # version 6, request, command 33, attempt 0, sequence; padded to the reply's 104 octets
    assert req[:20] == bytes.fromhex("0601000000210000deadbeef0000000000000000")
    assert len(req) == 28 + 76 and req[20:] == bytes(84)
    req = cp.request_index(cp.REQ_SOURCE_DATA, 1, 3)
    assert req[20:24] == (3).to_bytes(4, "big") and len(req) == 28 + 48
    addr = cp.IPAddr(cp.IPADDR_INET6, bytes(range(16)))
    req = cp.request_address(cp.REQ_AUTH_DATA, 2, addr)
    assert cp.IPAddr.decode(req[20:40]) == addr and len(req) == 28 + 24
    assert str(addr) == "1:203:405:607:809:a0b:c0d:e0f"
    assert str(cp.IPAddr(cp.IPADDR_ID, (7).to_bytes(4, "big").ljust(16, b"\0"))) == \
        "ID#0000000007"


@pytest.mark.parametrize(("word", "value"), [
    (0x00000000, 0.0),
    (0x02000000 | 1, 2.0 ** (1 - 25)),  # exponent 1, coefficient 1
    (0x01FFFFFF, -(2.0 ** -25)),  # exponent 0, coefficient -1
    (0xFE000000 | 0x00800000, 0.25 * 2.0 ** -1),  # exponent -1, coefficient 2^23
    (0x7E000000 | 0x00FFFFFF, (2 ** 24 - 1) * 2.0 ** (63 - 25)),  # the largest
])
def test_float_known_words(word: int, value: float) -> None:
    assert cp.decode_float(word) == value


@given(st.floats(min_value=-1e30, max_value=1e30, allow_nan=False))
def test_float_round_trip_keeps_25_bits(x: float) -> None:
    y = cp.decode_float(cp.encode_float(x))
    largest = (2 ** 24 - 1) * 2.0 ** 38
    if abs(x) < 2.0 ** -60:
        assert abs(y) <= 2.0 ** -60  # underflows to (nearly) zero, as chronyd's does
    elif abs(x) >= largest:
        assert math.isclose(abs(y), largest, rel_tol=2.0 ** -23) and y * x > 0  # saturates
    else:
        assert math.isclose(y, x, rel_tol=2.0 ** -23)


def test_timespec() -> None:
    assert cp.decode_timespec(struct.pack(">III", 0x7FFFFFFF, 5, 7)) == 5_000_000_007
    assert cp.decode_timespec(struct.pack(">III", 1, 0, 2_000_000_000)) == \
        (1 << 32) * 1_000_000_000 + 999_999_999


# -- fuzzing: only the codec's own errors escape -------------------------------------------


def _decode_or_typed_error(data: bytes) -> None:
    try:
        reply = cp.decode_reply(data)
    except cp.ChronyProtoError as exc:
        assert exc.reason
        return
    assert reply.reply in cp._DECODERS


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_typed_error(data)


@settings(max_examples=800)
@given(st.sampled_from(VECTORS), st.data())
def test_fuzz_mutated_real_replies(vector: bytes, data: st.DataObject) -> None:
    raw = bytearray(vector)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _decode_or_typed_error(bytes(raw[:cut]))


@settings(max_examples=400)
@given(st.sampled_from(sorted(cp._DECODERS)), st.binary(min_size=0, max_size=300))
def test_fuzz_valid_header_random_body(code: int, body: bytes) -> None:
    header = cp.REPLY_HEADER.pack(6, 2, 0, 0, 33, code, 0, 0, 0, 0, 1, 0, 0)
    _decode_or_typed_error(header + body)
