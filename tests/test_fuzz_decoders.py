"""Hostile input: every decoder of untrusted bytes raises only its own typed errors.

Targets (what reaches the agent from the network, a device or an operator):

* ``ntp``: ``ntp_packet.parse_reply`` (a UDP reply) -> ``NtpReplyError`` only;
* ``ptp``: ``ptp_mgmt.decode_message`` and the data-set decoders (a datagram from
  ptp4l's management socket) -> ``PtpMgmtError`` only;
* ``gnss_stream``: ``StreamSplitter.feed``/``flush`` over bytes cut into random
  reads (a serial port) -> never raises; errors are *returned* as
  ``GnssStreamError`` events;
* ``gpsd``: ``parse_report`` + ``GpsdEpochs.feed``/``flush`` (gpsd's JSON lines)
  -> ``GnssStreamError`` only;
* ``chrony``: ``chrony_proto.decode_reply`` (a reply on chronyd's command socket)
  -> ``ChronyProtoError`` only;
* ``config``: ``config.parse_config`` on arbitrary text and on valid TOML with
  random keys and values -> ``ConfigError`` only.

Hypothesis runs a quick profile here (``TIMEMON_FUZZ_EXAMPLES``, default 150 per
target, so CI stays fast); ``bench/fuzz.py`` runs >= 10^5 cases per target with
the same ``TARGETS`` and prints the counts.  No hang: hypothesis' deadline here,
the slowest case in the bench.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timemon.probes import chrony_proto, gnss_gpsd, gnss_stream, ptp_mgmt
from timemon.probes import ntp_packet as pkt

from timemon import config as cfg
from timemon.kinds import KINDS

EXAMPLES = int(os.environ.get("TIMEMON_FUZZ_EXAMPLES", "150"))
DATA = Path(__file__).parent / "data"


# -- the targets -----------------------------------------------------------------------


def check_ntp(data: bytes) -> str:
    # Take the nonce from the origin field (and sometimes the cookie from the receive
    # field) so that mutated replies pass the origin check and reach the deeper checks.
    nonce = int.from_bytes(data[24:32], "big") if len(data) >= 32 else 1
    cookie = int.from_bytes(data[32:40], "big") if len(data) >= 40 and data[0] & 1 else None
    try:
        pkt.parse_reply(data, nonce or 1, 1_800_000_000 * 10**9, cookie)
    except pkt.NtpReplyError:
        return "typed_error"
    return "accepted"


def check_ptp(data: bytes) -> str:
    try:
        message = ptp_mgmt.decode_message(data)
        message.dataset()
    except ptp_mgmt.PtpMgmtError:
        # Also the data-set decoders directly, with an id chosen by the input.
        if len(data) >= 2:
            ids = sorted(ptp_mgmt.DECODERS)
            management_id = ids[data[0] % len(ids)]
            try:
                ptp_mgmt.decode_dataset(management_id, data[1:])
            except ptp_mgmt.PtpMgmtError:
                return "typed_error"
            return "dataset"
        return "typed_error"
    return "accepted"


def check_gnss_stream(data: bytes) -> str:
    splitter = gnss_stream.StreamSplitter()
    # Cut into reads at positions the input chooses (frames split across reads).
    cuts = sorted({b * 7 % (len(data) + 1) for b in data[:8]} | {len(data)})
    events: list[Any] = []
    start = 0
    for i, end in enumerate(cuts):
        events += splitter.feed(data[start:end], i)
        start = end
    events += splitter.flush()
    frames = errors = 0
    for event in events:
        if isinstance(event, gnss_stream.Frame):
            frames += 1
        elif isinstance(event, gnss_stream.GnssStreamError):
            errors += 1
        else:
            raise AssertionError(f"unexpected event {event!r}")
    return "frames" if frames else ("typed_error" if errors else "nothing")


def _not_iterable(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, str))


def check_gpsd(data: bytes) -> str:
    epochs = gnss_gpsd.GpsdEpochs()
    result = "nothing"
    for line in data.split(b"\n"):
        try:
            report = gnss_gpsd.parse_report(line)
            got, offset = epochs.feed(report, 1)
            if got or offset:
                result = "accepted"
        except gnss_stream.GnssStreamError:
            result = "typed_error" if result == "nothing" else result
    try:
        if epochs.flush() is not None:
            result = "accepted"
    except gnss_stream.GnssStreamError:
        pass
    return result


def check_chrony(data: bytes) -> str:
    try:
        chrony_proto.decode_reply(data)
    except chrony_proto.ChronyProtoError:
        return "typed_error"
    return "accepted"


def check_config(data: bytes) -> str:
    try:
        cfg.parse_config(data.decode("utf-8", "replace"), "fuzz.toml")
    except cfg.ConfigError:
        return "typed_error"
    return "accepted"


# -- seeds ----------------------------------------------------------------------------


def ntp_seeds() -> list[bytes]:
    t = pkt.unix_ns_to_ntp(1_800_000_000 * 10**9)
    good = pkt.NTP_PACKET.pack((0 << 6) | (4 << 3) | 4, 1, 4, -20, 0, 0, b"GPS\0", t - 2**32,
                               0x1122334455667788, t, t + 1000)
    kod = pkt.NTP_PACKET.pack((3 << 6) | (4 << 3) | 4, 0, 4, -20, 0, 0, b"RATE", 0,
                              0x1122334455667788, 0, 0)
    return [good, kod, good + bytes(20), good[:47]]


def ptp_seeds() -> list[bytes]:
    seeds = [ptp_mgmt.encode_get(mid, 7) for mid in ptp_mgmt.DECODERS]
    source = ptp_mgmt.PortIdentity(bytes(range(8)), 1)
    for mid in ptp_mgmt.DECODERS:
        for size in (0, 8, 20, 44, 64):
            seeds.append(ptp_mgmt.encode_message(ptp_mgmt.ManagementMessage(
                0, 1, source, 2, mid, bytes((i * 37) & 0xFF for i in range(size)))))
    error = ptp_mgmt.ManagementErrorStatus(2, 0x2000)
    seeds.append(ptp_mgmt.encode_message(ptp_mgmt.ManagementMessage(
        0, 1, source, 2, 0x2000, b"", error)))
    return seeds


def gnss_seeds() -> list[bytes]:
    seeds = []
    for path in sorted((DATA / "gnss").glob("*.log")):
        raw = path.read_bytes()
        seeds += [raw[:1500], raw[len(raw) // 2:len(raw) // 2 + 1500]]
    return seeds


GPSD_LINES = [
    b'{"class":"VERSION","release":"3.22","proto_major":3,"proto_minor":14}',
    b'{"class":"DEVICES","devices":[{"path":"/dev/ttyS0","driver":"u-blox"}]}',
    b'{"class":"TPV","device":"/dev/ttyS0","mode":3,"status":1,'
    b'"time":"2024-05-01T12:00:00.000Z","leapseconds":18}',
    b'{"class":"SKY","satellites":[{"PRN":1,"ss":40,"used":true},{"PRN":2,"ss":20}],'
    b'"pdop":1.5,"tdop":0.9}',
    b'{"class":"SKY","uSat":7,"nSat":11}',
    b'{"class":"PPS","real_sec":1714564800,"real_nsec":0,"clock_sec":1714564800,'
    b'"clock_nsec":1200}',
    b'{"class":"TOFF","real_sec":1714564800,"real_nsec":0,"clock_sec":1714564800,'
    b'"clock_nsec":91000000}',
    b'{"class":"TPV","mode":2,"time":"2024-05-01T12:00:01.000Z"}',
    b'{"class":"ERROR","message":"unknown device"}',
]


def gpsd_seeds() -> list[bytes]:
    return [b"\n".join(GPSD_LINES), *GPSD_LINES]


def chrony_seeds() -> list[bytes]:
    seeds = []
    for code, size in sorted(chrony_proto._DECODERS.items()):  # noqa: SLF001 - its table
        header = chrony_proto.REPLY_HEADER.pack(
            chrony_proto.PROTO_VERSION, chrony_proto.PKT_TYPE_CMD_REPLY, 0, 0, 1, code,
            chrony_proto.STT_SUCCESS, 0, 0, 0, 7, 0, 0)
        seeds.append(header + bytes(size))  # zeros: valid for every report
        seeds.append(header + bytes((i * 29 + 3) & 0xFF for i in range(size)))
    return seeds


def config_seeds() -> list[bytes]:
    return [b'[agent]\nlisten = "127.0.0.1:9800"\nstore = ""\nretention = "7d"\n'
            b'[[source]]\nname = "a"\nkind = "ntp"\naddress = "127.0.0.1:123"\n'
            b'interval = "1s"\nlab = true\ntimeout = 0.5\n'
            b'[[source]]\nkind = "kernel"\ninterval = 1\n']


@dataclass
class Target:
    check: Callable[[bytes], str]
    seeds: Callable[[], list[bytes]]
    max_size: int = 600
    extra: dict[str, int] = field(default_factory=dict)


TARGETS: dict[str, Target] = {
    "ntp": Target(check_ntp, ntp_seeds, 120),
    "ptp": Target(check_ptp, ptp_seeds, 200),
    "gnss_stream": Target(check_gnss_stream, gnss_seeds, 3000),
    "gpsd": Target(check_gpsd, gpsd_seeds, 1500),
    "chrony": Target(check_chrony, chrony_seeds, 400),
    "config": Target(check_config, config_seeds, 800),
}


# -- random valid TOML with random keys and values -------------------------------------

KNOWN_SOURCE_KEYS = sorted({"name", "kind", "interval", *cfg.STABILITY_KEYS,
                            *(k for spec in KINDS.values() for k in spec.keys)})
KNOWN_AGENT_KEYS = sorted(cfg._AGENT_KEYS)  # noqa: SLF001 - the loader's own key set
PLAUSIBLE = ["1s", "0.5", "2m", "-1s", "7d", "", "127.0.0.1:123", "[::1]:123", "host:0",
             "/dev/null", "ntp", "kernel", "chrony", "ptp", "gnss", "G.8272-PRTC-A", "nan",
             "1e400", "0x10", "999999999999s"]


def toml_key(key: str) -> str:
    return json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(agent: dict[str, Any] | None, sources: list[dict[str, Any]],
                  other: dict[str, Any]) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in other.items()]
    if agent is not None:
        lines.append("[agent]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in agent.items()]
    for source in sources:
        lines.append("[[source]]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in source.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.sampled_from(PLAUSIBLE), st.text(max_size=12), st.booleans(),
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(sorted(KINDS)))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
                      max_leaves=6)
source_tables = st.dictionaries(
    st.sampled_from(KNOWN_SOURCE_KEYS) | st.text(min_size=1, max_size=8), values, max_size=8)
agent_tables = st.dictionaries(
    st.sampled_from(KNOWN_AGENT_KEYS) | st.text(min_size=1, max_size=8), values, max_size=4)
other_keys = st.dictionaries(st.text(min_size=1, max_size=8).filter(
    lambda k: k not in ("agent", "source")), values, max_size=1)


# -- mutation strategy shared by the byte targets ----------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], max_size: int) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=max_size))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == 1:
            data[pos:pos] = draw(st.binary(max_size=8))
        elif op == 2:
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


def fuzz_settings() -> settings:
    return settings(max_examples=EXAMPLES, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz_settings()
@given(mutated(ntp_seeds(), 120))
def test_fuzz_ntp_reply(data: bytes) -> None:
    check_ntp(data)


@fuzz_settings()
@given(mutated(ptp_seeds(), 200))
def test_fuzz_ptp_management(data: bytes) -> None:
    check_ptp(data)


@fuzz_settings()
@given(mutated(gnss_seeds(), 3000))
def test_fuzz_gnss_stream_splitter(data: bytes) -> None:
    check_gnss_stream(data)


@fuzz_settings()
@given(mutated(gpsd_seeds(), 1500))
def test_fuzz_gpsd_reports(data: bytes) -> None:
    check_gpsd(data)


@fuzz_settings()
@given(mutated(chrony_seeds(), 400))
def test_fuzz_chrony_reply(data: bytes) -> None:
    check_chrony(data)


@fuzz_settings()
@given(st.text(max_size=400) | mutated(config_seeds(), 800).map(
    lambda b: b.decode("utf-8", "replace")))
def test_fuzz_config_text(text: str) -> None:
    check_config(text.encode("utf-8", "surrogatepass"))


@fuzz_settings()
@given(agent=st.none() | agent_tables, sources=st.lists(source_tables, max_size=3),
       other=other_keys)
def test_fuzz_config_random_valid_toml(agent: dict[str, Any] | None,
                                       sources: list[dict[str, Any]],
                                       other: dict[str, Any]) -> None:
    text = toml_document(agent, sources, other)
    with contextlib.suppress(cfg.ConfigError):
        cfg.parse_config(text, "fuzz.toml")


def test_the_seeds_are_valid_inputs() -> None:
    """The fuzzers start from inputs the decoders accept (else they fuzz only the entry)."""
    assert check_ntp(ntp_seeds()[0]) == "accepted"
    assert check_ptp(ptp_seeds()[0]) in ("accepted", "typed_error")
    assert any(check_ptp(s) == "accepted" for s in ptp_seeds())
    # All but the Trimble capture (TSIP, a binary protocol the splitter does not speak).
    assert sum(check_gnss_stream(s) == "frames" for s in gnss_seeds()) >= len(gnss_seeds()) - 2
    assert check_gpsd(gpsd_seeds()[0]) == "accepted"
    assert check_config(config_seeds()[0]) == "accepted"
    assert sum(check_chrony(s) == "accepted" for s in chrony_seeds()) >= 8


def test_config_kind_of_the_wrong_type_is_a_config_error() -> None:
    """Found by bench/fuzz.py: ``kind = {...}`` used to raise TypeError (unhashable)."""
    for value in ("{a = 1}", "[1, 2]", "3"):
        text = f'[[source]]\nkind = {value}\n'
        try:
            cfg.parse_config(text, "fuzz.toml")
        except cfg.ConfigError as exc:
            assert "kind" in str(exc)
        else:
            raise AssertionError(f"accepted {text!r}")


# Found by bench/fuzz.py: non-list DEVICES.devices / SKY.satellites used to raise TypeError.
@pytest.mark.parametrize("lines", [
    [b'{"class":"DEVICES","devices":3}'],
    [b'{"class":"DEVICES","devices":null}'],
    [b'{"class":"SKY","satellites":7}', b'{"class":"TPV","time":"2024-05-01T12:00:00Z"}'],
])
def test_gpsd_reports_with_non_list_fields(lines: list[bytes]) -> None:
    epochs = gnss_gpsd.GpsdEpochs()
    try:
        for line in lines:
            epochs.feed(gnss_gpsd.parse_report(line), 1)
        epochs.flush()
    except gnss_stream.GnssStreamError:
        pass


def test_gpsd_pps_with_an_infinite_second_is_not_an_offset() -> None:
    """Found by the fuzzer in CI: JSON's 1e999 parses as inf, and int(inf) overflows."""
    from timemon.probes.gnss_gpsd import GpsdEpochs, parse_report

    epochs = GpsdEpochs()
    report = parse_report(b'{"class":"PPS","real_sec":1e14564800,"real_nsec":0,'
                          b'"clock_sec":1714564800,"clock_nsec":1200}')
    assert epochs.feed(report, 0)[1] is None
    tpv = parse_report(b'{"class":"TPV","mode":1e999,"status":-1e999,'
                       b'"time":"2024-05-01T12:00:00.000Z","leapseconds":1e999}')
    epochs.feed(tpv, 0)  # no exception: the fields fall back to their defaults
