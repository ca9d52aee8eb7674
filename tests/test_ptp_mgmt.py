"""The IEEE 1588 management codec (real ptp4l 3.1.1 replies as vectors, hypothesis fuzz),
and the client's handling of replies real ptp4l does not send (a small responder)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timemon.probes import ptp_mgmt as m
from timemon.probes.ptp import PtpClient, PtpProbeError, PtpSource, probe_once

from timemon.families import Families

# Replies of ptp4l 3.1.1 (slaveOnly, free_running, software stamps) to our GETs, captured
# on its UDS (sequence ids 0x1234.., TIME_PROPERTIES_DATA_SET 0x67; sourcePortIdentity
# 0000000000000000-4242).  What `pmc -u -b 0` printed for the same state is asserted below.
ALL_VECTORS = {
    m.DEFAULT_DATA_SET: (
        "0d02004a000000000000000000000000000000007e30f0fffe09f5b000001234047f000000000000"
        "00001092000002000001001620000300000180fffeffff807e30f0fffe09f5b00000"
    ),
    m.CURRENT_DATA_SET: (
        "0d020048000000000000000000000000000000007e30f0fffe09f5b000001235047f000000000000"
        "000010920000020000010014200100010000000002900000000000000ae60000"
    ),
    m.PARENT_DATA_SET: (
        "0d020056000000000000000000000000000000007e30f0fffe09f5b000001236047f000000000000"
        "0000109200000200000100222002f297d6fffee2972a00010000ffff7fffffff0af8feffff80f297"
        "d6fffee2972a"
    ),
    m.PORT_DATA_SET: (
        "0d020050000000000000000000000000000000007e30f0fffe09f5b000011237047f000000000000"
        "00001092000002000001001c20047e30f0fffe09f5b0000108fd0000000000000000fe03fd010002"
    ),
    m.TIME_STATUS_NP: (
        "0d020068000000000000000000000000000000007e30f0fffe09f5b000001238047f000000000000"
        "000010920000020000010034c000000000000000029018ec29c8f81c8fe700000000000000000000"
        "00000000000000000000000000000001f297d6fffee2972a"
    ),
    m.PORT_STATS_NP: (
        "0d020140000000000000000000000000000000007e30f0fffe09f5b000011239047f000000000000"
        "00001092000002000001010cc0057e30f0fffe09f5b00001db050000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000db05000000000000e5050000000000000000000000000000ee02000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "e5050000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    ),
    m.TIME_PROPERTIES_DATA_SET: (
        "0d02003a000000000000000000000000000000007e30f0fffe09f5b000000067047f000000000000"
        "0000000000000200000100062003002500a0"
    ),
}
NO_SUCH_ID_HEX = (
    "0d02003c000000000000000000000000000000007e30f0fffe09f5b00001123a047f000000000000"
    "0000109200000200000200080002c0ff00000000"
)


def vector(mid: int) -> bytes:
    return bytes.fromhex(ALL_VECTORS[mid])


# -- the codec against ptp4l's own bytes -------------------------------------------------


def test_get_request_layout() -> None:
    req = m.encode_get(m.TIME_STATUS_NP, 0xBEEF, domain=24, source=m.PortIdentity(bytes(8), 7))
    assert len(req) == 54  # 34 header + 14 management + TLV type, length, id
    assert req[0] == 0x0D and req[1] == 2 and struct.unpack(">H", req[2:4])[0] == 54
    assert req[4] == 24 and req[32] == 0x04 and req[33] == 0x7F
    assert req[34:44] == b"\xff" * 10  # every port
    assert req[46] & 0x0F == m.ACTION_GET
    assert req[48:] == bytes.fromhex("00010002c000")
    msg = m.decode_message(req)
    assert (msg.sequence_id, msg.domain, msg.action, msg.management_id, msg.data) == (
        0xBEEF, 24, m.ACTION_GET, m.TIME_STATUS_NP, b"")
    with pytest.raises(ValueError):
        m.encode_get(m.DEFAULT_DATA_SET, 1, domain=256)


def test_real_replies_decode_to_what_pmc_printed() -> None:
    sets = {}
    for mid in ALL_VECTORS:
        msg = m.decode_message(vector(mid))
        assert msg.action == m.ACTION_RESPONSE and msg.management_id == mid
        sets[mid] = msg.dataset()
    default = sets[m.DEFAULT_DATA_SET]
    assert isinstance(default, m.DefaultDataSet)
    assert (default.two_step, default.slave_only, default.number_ports, default.priority1,
            default.priority2, default.domain) == (True, True, 1, 128, 128, 0)
    assert default.quality == m.ClockQuality(255, 0xFE, 0xFFFF)
    assert m.clock_identity_text(default.clock_identity) == "7e30f0.fffe.09f5b0"
    current = sets[m.CURRENT_DATA_SET]
    assert isinstance(current, m.CurrentDataSet)
    # pmc: stepsRemoved 1, offsetFromMaster 656.0, meanPathDelay 2790.0
    assert current.steps_removed == 1
    assert current.offset_from_master == pytest.approx(656e-9, abs=1e-15)
    assert current.mean_path_delay == pytest.approx(2790e-9, abs=1e-15)
    parent = sets[m.PARENT_DATA_SET]
    assert isinstance(parent, m.ParentDataSet)
    assert str(parent.parent_port) == "f297d6.fffe.e2972a-1"
    assert parent.gm_identity_text == "f297d6.fffe.e2972a"
    assert (parent.gm_priority1, parent.gm_priority2, parent.gm_quality) == (
        10, 128, m.ClockQuality(248, 0xFE, 0xFFFF))
    assert (parent.observed_offset_scaled_log_variance,
            parent.observed_phase_change_rate) == (0xFFFF, 0x7FFFFFFF)
    port = sets[m.PORT_DATA_SET]
    assert isinstance(port, m.PortDataSet)
    assert port.port_state_name == "UNCALIBRATED" and port.port_identity.port_number == 1
    assert (port.log_min_delay_req_interval, port.log_announce_interval,
            port.announce_receipt_timeout, port.log_sync_interval, port.delay_mechanism,
            port.version_number) == (-3, -2, 3, -3, 1, 2)
    status = sets[m.TIME_STATUS_NP]
    assert isinstance(status, m.TimeStatusNp)
    assert status.master_offset_ns == 656 and status.ingress_time_ns == 1795856294546804711
    assert status.gm_present and status.gm_identity_text == "f297d6.fffe.e2972a"
    tp = sets[m.TIME_PROPERTIES_DATA_SET]
    assert tp == m.TimePropertiesDataSet(37, False, False, False, False, False, False, 0xA0)
    stats = sets[m.PORT_STATS_NP]
    assert isinstance(stats, m.PortStatsNp)
    named = stats.named()
    assert named[("rx", "sync")] == 0x5DB == named[("rx", "follow_up")]
    assert named[("rx", "delay_resp")] == 0x5E5 == named[("tx", "delay_req")]
    assert named[("rx", "announce")] == 0x2EE and named[("tx", "sync")] == 0


def test_error_status_reply() -> None:
    msg = m.decode_message(bytes.fromhex(NO_SUCH_ID_HEX))
    assert msg.error is not None and msg.management_id == 0xC0FF
    assert msg.error.error_id == 0x0002 and "NO_SUCH_ID" in str(msg.error)
    with pytest.raises(m.ManagementErrorStatus):
        msg.dataset()


@pytest.mark.parametrize("mid", sorted(ALL_VECTORS))
def test_every_truncation_raises_a_typed_error(mid: int) -> None:
    data = vector(mid)
    for cut in range(len(data) - 1):
        if mid == m.PORT_STATS_NP and cut >= 48 + 6 + m.PortStatsNp.SIZE:
            continue  # only the trailing pad is cut
        with pytest.raises(m.PtpMgmtError):
            m.decode_message(data[:cut]).dataset()


def test_wrong_message_kinds() -> None:
    data = bytearray(vector(m.CURRENT_DATA_SET))
    data[0] = 0x0B  # an announce
    with pytest.raises(m.MalformedMessage, match="not management"):
        m.decode_message(bytes(data))
    data = bytearray(vector(m.CURRENT_DATA_SET))
    data[1] = 1
    with pytest.raises(m.MalformedMessage, match="versionPTP"):
        m.decode_message(bytes(data))
    data = bytearray(vector(m.CURRENT_DATA_SET))
    data[48:50] = b"\x00\x08"  # a path trace TLV where the management TLV should be
    with pytest.raises(m.MalformedMessage, match="tlvType"):
        m.decode_message(bytes(data))
    with pytest.raises(m.MalformedMessage):
        m.decode_dataset(0x2005, b"\x00\x00")
    # Octets past messageLength are padding (clause 13.3.2.4), not an error.
    assert m.decode_message(vector(m.CURRENT_DATA_SET) + b"\x00" * 9).dataset() == \
        m.decode_message(vector(m.CURRENT_DATA_SET)).dataset()


def test_sign_and_units_of_the_offset() -> None:
    """offsetFromMaster is scaled ns (2**16), slave − master: no negation anywhere."""
    cds = m.CurrentDataSet(2, -1500 * 65536, 3000 * 65536 + 32768)
    again = m.CurrentDataSet.decode(cds.encode())
    assert again.offset_from_master == pytest.approx(-1.5e-6)
    assert again.mean_path_delay == pytest.approx(3000.5e-9)


# -- hypothesis ----------------------------------------------------------------------------

u8, u16, i8 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(-128, 127)
ident = st.binary(min_size=8, max_size=8)
port_id = st.builds(m.PortIdentity, ident, u16)
quality = st.builds(m.ClockQuality, u8, u8, u16)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
u64 = st.integers(0, (1 << 64) - 1)
datasets = st.one_of(
    st.builds(m.DefaultDataSet, st.booleans(), st.booleans(), u16, u8, quality, u8, ident, u8),
    st.builds(m.CurrentDataSet, u16, i64, i64),
    st.builds(m.ParentDataSet, port_id, st.booleans(), u16,
              st.integers(-(1 << 31), (1 << 31) - 1), u8, quality, u8, ident),
    st.builds(m.TimePropertiesDataSet, st.integers(-32768, 32767), *[st.booleans()] * 6, u8),
    st.builds(m.PortDataSet, port_id, u8, i8, i64, i8, u8, i8, u8, i8, st.integers(0, 15)),
    st.builds(m.TimeStatusNp, i64, i64, st.integers(-(1 << 31), (1 << 31) - 1),
              st.integers(-(1 << 31), (1 << 31) - 1), u16, st.binary(min_size=12, max_size=12),
              st.booleans(), ident),
    st.builds(m.PortStatsNp, port_id, st.tuples(*[u64] * 16), st.tuples(*[u64] * 16)),
)


@given(datasets, u16, u8)
def test_dataset_round_trip(ds: m.DataSet, seq: int, domain: int) -> None:
    msg = m.ManagementMessage(domain, seq, m.PortIdentity(bytes(8), 1), m.ACTION_RESPONSE,
                              ds.management_id, ds.encode())
    wire = m.encode_message(msg)
    back = m.decode_message(wire)
    assert (back.sequence_id, back.domain, back.management_id) == (seq, domain,
                                                                   ds.management_id)
    assert back.dataset() == ds


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        msg = m.decode_message(data)
        msg.dataset()
    except m.PtpMgmtError:
        pass


@settings(max_examples=600)
@given(st.sampled_from(sorted(ALL_VECTORS)), st.data())
def test_fuzz_mutated_real_replies(mid: int, data: st.DataObject) -> None:
    """Flip, cut and extend ptp4l's own replies: decoding raises only our errors."""
    raw = bytearray(vector(mid))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(u8)
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) + data.draw(st.binary(max_size=8))
    with contextlib.suppress(m.PtpMgmtError):
        m.decode_message(mutated).dataset()


@given(st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_fuzz_dataset_fields(mid: int, payload: bytes) -> None:
    with contextlib.suppress(m.PtpMgmtError):
        m.decode_dataset(mid, payload)


# -- the client against a responder of our own (replies ptp4l never sends) --------------

Handler = Callable[[m.ManagementMessage], list[bytes]]


class Responder:
    """A Unix datagram socket answering GETs with ``handler(request)``, in a thread."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = str(path)
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, addr = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            for reply in self.handler(m.decode_message(data)):
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, addr)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def respond(req: m.ManagementMessage, mid: int | None = None, data: bytes | None = None,
            seq: int | None = None, error: int | None = None) -> bytes:
    mid = req.management_id if mid is None else mid
    if data is None and error is None:
        data = m.decode_message(vector(mid)).data
    return m.encode_message(m.ManagementMessage(
        0, req.sequence_id if seq is None else seq, m.PortIdentity(b"\x7e" * 8, 0),
        m.ACTION_RESPONSE, mid, data or b"",
        m.ManagementErrorStatus(error, mid) if error is not None else None))


@pytest.fixture
def responder(tmp_path: Path) -> Iterator[Callable[[Handler], Responder]]:
    made: list[Responder] = []

    def make(handler: Handler) -> Responder:
        r = Responder(tmp_path / "ptp4l", handler)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.stop()


def test_foreign_sequence_ids_are_ignored(responder) -> None:
    def handler(req: m.ManagementMessage) -> list[bytes]:
        # A stale reply with someone else's sequence id first, then the genuine one.
        foreign = respond(req, seq=(req.sequence_id + 1000) & 0xFFFF, mid=m.CURRENT_DATA_SET,
                          data=m.CurrentDataSet(1, 999_000 * 65536, 0).encode())
        return [foreign, respond(req)]

    r = responder(handler)
    rejects: list[tuple[str, str]] = []
    client = PtpClient(r.path, timeout=2.0, on_reject=lambda a, b: rejects.append((a, b)))
    try:
        state = asyncio.run(client.read_state())
        own_dir = os.path.dirname(client.local_path or "")
        assert os.stat(own_dir).st_mode & 0o777 == 0o700
    finally:
        client.close()
    assert not os.path.exists(own_dir)  # the private socket directory is gone
    assert state.current.offset_from_master == pytest.approx(656e-9)
    assert state.offset == pytest.approx(656e-9)  # TIME_STATUS_NP master_offset
    assert len([r for r in rejects if r[0] == "bad_sequence"]) == 7


def test_linuxptp_tlvs_absent_is_not_an_error(tmp_path: Path) -> None:
    def handler(req: m.ManagementMessage) -> list[bytes]:
        if req.management_id in (m.TIME_STATUS_NP, m.PORT_STATS_NP):
            return [respond(req, error=0x0002)]  # NO_SUCH_ID, as ptp4l does for unknown ids
        return [respond(req)]

    r = Responder(tmp_path / "old-ptp4l", handler)
    try:
        state = asyncio.run(probe_once(r.path, timeout=1.0))
    finally:
        r.stop()
    assert state.time_status is None and state.port_stats == () and state.messages() is None
    assert state.offset_origin == "CURRENT_DATA_SET"
    assert state.offset == pytest.approx(656e-9)
    assert state.gm_present  # GM f297d6... is not this clock (7e30f0...)
    assert state.as_json()["messages"] is None


def test_silent_linuxptp_tlvs_are_absent_too(responder) -> None:
    r = responder(lambda req: [] if req.management_id >= 0xC000 else [respond(req)])
    state = asyncio.run(probe_once(r.path, timeout=0.3))
    assert state.time_status is None and state.port_state == 8


@pytest.mark.parametrize("mangle", [
    lambda b: b[:60],  # cut inside the data set: shorter than messageLength
    lambda b: b[:48] + b"\x00\x01\x00\x40" + b[52:],  # TLV longer than the message
])
def test_undecodable_reply_is_counted_and_ignored(responder, mangle) -> None:
    def handler(req: m.ManagementMessage) -> list[bytes]:
        reply = respond(req)
        return [mangle(reply) if req.management_id == m.CURRENT_DATA_SET else reply]

    r = responder(handler)
    rejects: list[tuple[str, str]] = []
    with PtpClient(r.path, timeout=0.3, on_reject=lambda a, b: rejects.append((a, b))
                   ) as client, pytest.raises(PtpProbeError) as info:
        asyncio.run(client.read_state())
    assert info.value.reason == "timeout" and "CURRENT_DATA_SET" in str(info.value)
    assert [reason for reason, _ in rejects] == ["truncated"]


def test_short_data_set_fails_the_poll(responder) -> None:
    """A well-formed message whose CURRENT_DATA_SET has 4 of its 18 octets."""
    def handler(req: m.ManagementMessage) -> list[bytes]:
        if req.management_id == m.CURRENT_DATA_SET:
            return [respond(req, data=b"\x00\x01\x00\x00")]
        return [respond(req)]

    r = responder(handler)
    with pytest.raises(PtpProbeError) as info:
        asyncio.run(probe_once(r.path, timeout=1.0))
    assert info.value.reason == "truncated" and "CURRENT_DATA_SET" in str(info.value)


def test_no_socket_and_stale_socket(tmp_path: Path) -> None:
    with pytest.raises(PtpProbeError) as info:
        asyncio.run(probe_once(str(tmp_path / "missing"), timeout=0.2))
    assert info.value.reason == "no_socket" and "does not exist" in str(info.value)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(tmp_path / "stale"))
    stale.close()  # the file stays, nobody reads it: what a killed ptp4l leaves
    with pytest.raises(PtpProbeError) as info:
        asyncio.run(probe_once(str(tmp_path / "stale"), timeout=0.2))
    assert info.value.reason == "no_socket"


def test_silence_is_a_timeout(responder) -> None:
    r = responder(lambda req: [])
    with pytest.raises(PtpProbeError) as info:
        asyncio.run(probe_once(r.path, timeout=0.2))
    assert info.value.reason == "timeout"


def _port(number: int, state: int) -> bytes:
    return m.PortDataSet(m.PortIdentity(bytes.fromhex("7e30f0fffe09f5b0"), number), state,
                         0, 0, 1, 3, 0, 1, 0, 2).encode()


def test_boundary_clock_ports(responder) -> None:
    """Port-level data sets come once per port: the poll waits for numberPorts replies."""
    def handler(req: m.ManagementMessage) -> list[bytes]:
        if req.management_id == m.DEFAULT_DATA_SET:
            ds = m.DefaultDataSet.decode(m.decode_message(vector(m.DEFAULT_DATA_SET)).data)
            return [respond(req, data=m.DefaultDataSet(
                True, False, 2, ds.priority1, ds.quality, ds.priority2, ds.clock_identity,
                0).encode())]
        if req.management_id == m.PORT_DATA_SET:
            return [respond(req, data=_port(1, 6)), respond(req, data=_port(2, 9))]
        if req.management_id == m.PORT_STATS_NP:
            one = m.decode_message(vector(m.PORT_STATS_NP)).data
            return [respond(req, data=one), respond(req, data=one)]
        return [respond(req)]

    r = responder(handler)
    state = asyncio.run(probe_once(r.path, timeout=2.0))
    assert len(state.ports) == 2 and state.port_state == 9  # the SLAVE port
    assert state.as_json()["port_states"] == {"1": "MASTER", "2": "SLAVE"}
    assert (state.messages() or {})[("rx", "sync")] == 2 * 0x5DB


def test_source_counts_gm_changes_and_goes_down(responder) -> None:
    gm = {"id": bytes.fromhex("f297d6fffee2972a"), "present": True}

    def handler(req: m.ManagementMessage) -> list[bytes]:
        if req.management_id == m.PARENT_DATA_SET:
            p = m.ParentDataSet.decode(m.decode_message(vector(m.PARENT_DATA_SET)).data)
            own = bytes.fromhex("7e30f0fffe09f5b0")
            ident = gm["id"] if gm["present"] else own
            return [respond(req, data=m.ParentDataSet(
                p.parent_port, False, 0, 0, 10, p.gm_quality, 128, ident).encode())]
        if req.management_id == m.TIME_STATUS_NP:
            t = m.TimeStatusNp.decode(m.decode_message(vector(m.TIME_STATUS_NP)).data)
            return [respond(req, data=m.TimeStatusNp(
                t.master_offset_ns, t.ingress_time_ns, 0, 0, 0, bytes(12), gm["present"],
                gm["id"]).encode())]
        return [respond(req)]

    r = responder(handler)
    collected: list = []
    source = PtpSource("bc", r.path, interval=1.0, sink=lambda s, x: collected.append(x))

    async def scenario() -> None:
        await source.poll_once()
        assert source.up and source.gm_changes == 0
        await source.poll_once()  # the same sync (ingress_time): no second sample
        assert len(collected) == 1
        gm["present"] = False
        await source.poll_once()  # GM lost: no reference, no offset, no change yet
        assert not source.up and source.offset is None and source.gm_changes == 0
        gm["present"] = True
        await source.poll_once()  # the same GM back: not a change
        assert source.gm_changes == 0
        gm["id"] = bytes.fromhex("aabbccfffe000001")
        await source.poll_once()
        assert source.gm_changes == 1
        r.stop()
        await source.poll_once()
        assert not source.up and source.state is None
        assert source.errors["no_socket"] == 1
        await source.close()

    asyncio.run(scenario())
    assert collected[0].offset == pytest.approx(656e-9)
    assert collected[0].delay == pytest.approx(2790e-9)
    out = Families()
    source.collect_specific(out)
    names = {f.name for f in out}
    assert names == {"timemon_ptp_gm_changes", "timemon_ptp_messages"}
    changes = next(f for f in out if f.name == "timemon_ptp_gm_changes")
    assert changes.samples[0].value == 1


# -- config ------------------------------------------------------------------------------


def test_config_kind_ptp(tmp_path: Path) -> None:
    from timemon.config import ConfigError, load_config, parse_config

    config = parse_config('[[source]]\nname = "p"\nkind = "ptp"\n')
    (sc,) = config.sources
    assert (sc.kind, sc.interval, sc.options["uds"], sc.options["domain"]) == (
        "ptp", 1.0, "/var/run/ptp4l", 0)
    example = Path(__file__).resolve().parent.parent / "examples" / "ptp.toml"
    assert [s.options["domain"] for s in load_config(str(example)).sources] == [0, 24]
    for body, expected in (
        ('domain = 256', "domain"),
        ('domain = true', "domain"),
        ('uds = ""', "uds"),
        (f'uds = "/{"x" * 120}"', "uds"),
        ('interval = "50ms"', "floor"),
        ('address = "x"', "unknown key"),
    ):
        with pytest.raises(ConfigError, match=expected) as info:
            parse_config(f'[[source]]\nname = "p"\nkind = "ptp"\n{body}\n', "t.toml")
        assert "t.toml:4" in str(info.value)
