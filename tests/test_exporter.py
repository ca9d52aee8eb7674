"""The exporter: what a scrape returns, built without I/O from the sources' state."""

from __future__ import annotations

import builtins
import socket
import subprocess

import pytest
from conftest import find_binary
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from timemon.probes import ntp_packet as pkt
from timemon.probes.kernel import KernelSource
from timemon.probes.ntp import Measurement, NtpSource

from timemon.address import HostPort
from timemon.exporter import AgentState, make_registry


def populated_state() -> AgentState:
    ntp = NtpSource("gm", HostPort("192.0.2.1", 123), interval=16.0)
    reply = pkt.ServerReply(leap=0, version=4, stratum=1, poll=4, precision=-20,
                            root_delay=1e-4, root_dispersion=2e-4, refid=b"GPS\0",
                            reference_ns=0, receive_ns=1_000_000_500, transmit_ns=1_000_000_600)
    ntp._on_measurement(Measurement(reply, pkt.Exchange(1_000_000_000, 1_000_000_500,
                                                        1_000_000_600, 1_000_001_000),
                                    True, True))
    ntp.count_error("timeout")
    ntp.kod["RATE"] = 1
    kernel = KernelSource(interval=1.0)
    kernel.poll_once()
    state = AgentState()
    state.sources = (ntp, kernel)
    return state


def test_scrape_has_the_generic_and_ntp_families() -> None:
    text = generate_latest(make_registry(populated_state())).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("timemon_source_up", "timemon_offset_seconds", "timemon_delay_seconds",
                 "timemon_samples", "timemon_probe_errors", "timemon_ntp_stratum",
                 "timemon_ntp_kod", "timemon_ntp_server_info", "timemon_build_info",
                 "timemon_store_errors", "timemon_event_loop_lag_seconds",
                 "timemon_kernel_sync_status"):
        assert name in families, name
    offset = families["timemon_offset_seconds"].samples[0]
    assert offset.labels == {"source": "gm", "kind": "ntp"}
    # T2 − T1 = 500 ns, T3 − T4 = −400 ns: theta = 50 ns, offset = −50 ns.
    assert offset.value == pytest.approx(-50e-9)
    errors = families["timemon_probe_errors"].samples
    assert [(s.labels["reason"], s.value) for s in errors] == [("timeout", 1.0)]
    info = families["timemon_ntp_server_info"].samples[0]
    assert info.labels["refid"] == "GPS"


def test_server_info_follows_the_servers_reference() -> None:
    import dataclasses

    state = populated_state()
    ntp = state.sources[0]
    assert isinstance(ntp, NtpSource) and ntp.reply is not None

    def server_info() -> dict[str, str]:
        text = generate_latest(make_registry(state)).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return families["timemon_ntp_server_info"].samples[0].labels

    assert server_info()["refid"] == "GPS"
    # Stratum 2: the refid is the upstream server's IPv4 address (RFC 5905).
    ntp.reply = dataclasses.replace(ntp.reply, stratum=2, refid=bytes([192, 0, 2, 7]))
    assert server_info() == {"source": "gm", "kind": "ntp", "refid": "192.0.2.7",
                             "version": "4", "address": "192.0.2.1:123"}
    ntp.reply = dataclasses.replace(ntp.reply, version=3)
    assert server_info()["version"] == "3"


def test_the_scrape_text_follows_errors_kod_and_the_server_and_reuses_what_held() -> None:
    """``/metrics`` keeps an NTP source's own families as text while its error count and
    server identity hold (Source.own_key); each change shows at the next scrape."""
    import dataclasses

    from timemon.http_server import render_metrics

    state = populated_state()
    ntp = state.sources[0]
    assert isinstance(ntp, NtpSource) and ntp.reply is not None

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        text = render_metrics(state).decode()
        return {f.name: [(s.labels, s.value) for s in f.samples]
                for f in text_string_to_metric_families(text)}

    first = scrape()
    assert first["timemon_probe_errors"] == [
        ({"source": "gm", "kind": "ntp", "reason": "timeout"}, 1.0)]
    assert first["timemon_ntp_kod"] == [({"source": "gm", "kind": "ntp", "code": "RATE"}, 1.0)]
    fragment = ntp._own_fragment
    assert scrape() == first and ntp._own_fragment is fragment  # nothing changed: reused
    ntp.count_error("timeout")
    ntp._on_kod(pkt.KissOfDeath("RATE"))
    after = scrape()
    assert after["timemon_probe_errors"] == [
        ({"source": "gm", "kind": "ntp", "reason": "kod_rate"}, 1.0),
        ({"source": "gm", "kind": "ntp", "reason": "timeout"}, 2.0)]
    assert after["timemon_ntp_kod"] == [({"source": "gm", "kind": "ntp", "code": "RATE"}, 2.0)]
    ntp.reply = dataclasses.replace(ntp.reply, stratum=2, refid=bytes([192, 0, 2, 7]))
    assert scrape()["timemon_ntp_server_info"][0][0]["refid"] == "192.0.2.7"
    ntp.reply = dataclasses.replace(ntp.reply, version=3)
    assert scrape()["timemon_ntp_server_info"][0][0]["version"] == "3"


def test_collect_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = make_registry(populated_state())

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("I/O during collect()")

    monkeypatch.setattr(builtins, "open", forbidden)
    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    assert b"timemon_offset_seconds" in generate_latest(registry)


def test_promtool_check_metrics_is_clean() -> None:
    promtool = find_binary("promtool")
    text = generate_latest(make_registry(populated_state())).decode()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(min_value=-(2**62), max_value=2**62)))
def test_values_are_written_as_prometheus_client_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    from timemon.families import format_value

    assert format_value(value) == floatToGoString(value)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.floats(min_value=-2e6, max_value=2e6),
                 st.integers(min_value=-(2**62), max_value=2**62)))
def test_a_source_gauge_line_writes_the_value_as_prometheus_client(value: float) -> None:
    """The text path's shortcut for a source's samples (repr below 1e6) must agree too."""
    from prometheus_client.utils import floatToGoString

    from timemon.families import SOURCE_LABELS, Families, LabelSet

    out = Families(text=True)
    out.gauge("x", "doc", SOURCE_LABELS, LabelSet(SOURCE_LABELS, ("s", "ntp")), value)
    line = out.render().decode().splitlines()[-1]
    assert line == f'x{{kind="ntp",source="s"}} {floatToGoString(value)}'


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.floats(min_value=-2e6, max_value=2e6),
                 st.integers(min_value=-2_000_000, max_value=2_000_000),
                 st.integers(min_value=-(2**62), max_value=2**62),
                 st.booleans()))
def test_a_column_writes_the_value_as_prometheus_client(value: float) -> None:
    """The column path's shortcuts (repr for a float, digits and ".0" for an int, both
    below 1e6) must agree with prometheus_client as well."""
    from prometheus_client.utils import floatToGoString

    from timemon.families import SOURCE_LABELS, Column, Families, LabelSet

    class Holder:
        label_values = LabelSet(SOURCE_LABELS, ("s", "ntp"))

    out = Families(text=True)
    out.columns((Column("x", "doc", "gauge", lambda _h: value),), (Holder(),))
    line = out.render().decode().splitlines()[-1]
    assert line == f'x{{kind="ntp",source="s"}} {floatToGoString(value)}'


def test_a_column_follows_its_values_from_scrape_to_scrape() -> None:
    from timemon.families import SOURCE_LABELS, Column, Families, LabelSet

    class Holder:
        def __init__(self, name: str, value: float | None) -> None:
            self.label_values = LabelSet(SOURCE_LABELS, (name, "ntp"))
            self.value = value

    column = Column("x", "doc", "gauge", lambda h: h.value)
    holders = [Holder("a", 1.0), Holder("b", 2)]

    def scrape() -> list[str]:
        out = Families(text=True)
        out.columns((column,), holders)
        return [line for line in out.render().decode().splitlines()
                if not line.startswith("#")]

    assert scrape() == ['x{kind="ntp",source="a"} 1.0', 'x{kind="ntp",source="b"} 2.0']
    label_sets = [h.label_values for h in holders]
    assert column.text(label_sets, [1.0, 2]) is column.text(label_sets, [1.0, 2])  # reused
    holders[1].value = 2.5
    assert scrape()[1] == 'x{kind="ntp",source="b"} 2.5'
    holders[0].value = None
    assert scrape() == ['x{kind="ntp",source="b"} 2.5']
    holders.append(Holder("c", 2.5))  # a new source: new label sets, same values
    assert scrape()[-1] == 'x{kind="ntp",source="c"} 2.5'


def test_fragments_of_different_layouts_merge_into_whole_families() -> None:
    """``merge_all`` moves the texts family by family for fragments of one layout; with
    layouts interleaved, every sample still lands in its own family, once, and the
    text path writes what the entry path writes."""
    from timemon.families import Families, Fragment

    def fragment(source: str, names: tuple[str, ...]) -> Fragment:
        def build() -> Families:
            out = Families()
            for k, name in enumerate(names):
                out.gauge(name, f"doc of {name}", ("source", "k"), (source, str(k)), k + 0.5)
            return out
        return Fragment(build)

    frags = [fragment("a", ("f", "g")), fragment("b", ("g", "h")), fragment("c", ("f", "g")),
             fragment("d", ("h",)), fragment("e", ("g", "h"))]
    assert frags[0].layout is frags[2].layout and frags[1].layout is frags[4].layout

    def render(text: bool) -> bytes:
        out = Families(text)
        out.gauge("f", "doc of f", ("source", "k"), ("direct", "9"), 9.0)  # a family made first
        out.merge_all(frags)
        return out.render()

    text = render(True)
    assert text == render(False)
    families = {f.name: sorted((s.labels["source"], s.labels["k"], s.value) for s in f.samples)
                for f in text_string_to_metric_families(text.decode())}
    assert families == {
        "f": [("a", "0", 0.5), ("c", "0", 0.5), ("direct", "9", 9.0)],
        "g": [("a", "1", 1.5), ("b", "0", 0.5), ("c", "1", 1.5), ("e", "0", 0.5)],
        "h": [("b", "1", 1.5), ("d", "0", 0.5), ("e", "1", 1.5)],
    }
    # Each family's HELP once: its samples are together (the format requires it).
    assert [line.split()[2] for line in text.decode().splitlines()
            if line.startswith("# HELP")] == ["f", "g", "h"]


def test_a_large_scrape_is_written_in_full_blocks_that_join_to_the_whole() -> None:
    """``render_blocks`` (what the server writes) gives ``render``'s bytes in blocks of
    whole texts, each filled greedily up to CHUNK_BYTES; only a text longer than that
    on its own (a column for many sources) makes a longer block, alone and uncopied."""
    from timemon.families import CHUNK_BYTES, Column, Families, LabelSet

    class Src:
        def __init__(self, i: int) -> None:
            self.label_values = LabelSet(("source", "kind"), (f"source-{i:05d}", "ntp"))
            self.offset = i * 1e-7

    out = Families(text=True)
    for i in range(4000):  # small texts: ~230 KB in all
        out.gauge("timemon_small", "many small texts", ("source", "k"), (f"s{i}", "x"), i / 7)
    column = Column("timemon_offset_seconds", "a column", "gauge", lambda s: s.offset)
    out.columns((column,), [Src(i) for i in range(3000)])  # one text of ~170 KB
    texts = out._texts()
    assert max(map(len, texts)) > CHUNK_BYTES
    length, blocks = out.render_blocks()
    chunks = list(blocks)
    assert b"".join(chunks) == out.render() and length == len(out.render())
    assert len(chunks) > 4
    i = 0
    for chunk in chunks:
        members = []
        while sum(map(len, members)) < len(chunk):
            members.append(texts[i])
            i += 1
        assert b"".join(members) == chunk
        if len(chunk) > CHUNK_BYTES:  # only a long text alone, not copied
            assert len(members) == 1 and chunk is members[0]
        if i < len(texts):  # filled: the next text would not have fit
            assert len(chunk) + len(texts[i]) > CHUNK_BYTES
    assert i == len(texts)
