"""The chrony probe against real chronyd 4.x: a loopback server and a client of it whose
command socket the probe reads, compared with chronyc on the same socket."""

from __future__ import annotations

import asyncio
import glob
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Chronyd, find_binary, free_udp_port
from timemon.probes import chrony_proto as cp
from timemon.probes.chrony import ChronyProbeError, ChronySource, ChronyState, probe_once

from timemon.address import HostPort
from timemon.families import Families


class ChronyPair:
    def __init__(self, base: Path) -> None:
        self.server = Chronyd(base / "server", free_udp_port())
        self.server.wait_serving()
        self.cmdport = free_udp_port()
        self.client = Chronyd(base / "client", client_of=self.server.port, poll=0,
                              extra=f"cmdport {self.cmdport}\nbindcmdaddress 127.0.0.1\n")
        self.socket = str(self.client.socket_path)

    def chronyc(self, *args: str) -> list[list[str]]:
        out = subprocess.run([find_binary("chronyc"), "-h", self.socket, "-c", *args],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [line.split(",") for line in out.splitlines() if line]

    def stop(self) -> None:
        self.client.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[ChronyPair]:
    find_binary("chronyd")
    find_binary("chronyc")
    with tempfile.TemporaryDirectory(prefix="timemon-chrony-test-") as tmp:
        p = ChronyPair(Path(tmp))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                stats = p.chronyc("sourcestats") if p.client.socket_path.exists() else []
                if stats and int(stats[0][1]) >= 4 and p.chronyc("tracking")[0][2] == "2":
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the client chronyd did not synchronise")
            yield p
        finally:
            p.stop()


def _read_around(pair: ChronyPair) -> tuple[dict, ChronyState, dict]:
    def read() -> dict:
        return {"tracking": pair.chronyc("tracking")[0], "sources": pair.chronyc("sources"),
                "sourcestats": pair.chronyc("sourcestats")}

    before = read()
    state = asyncio.run(probe_once(pair.socket))
    return before, state, read()


def _f9(x: float) -> str:
    return f"{x:.9f}"


def _f3(x: float) -> str:
    return f"{x:.3f}"


def _within(value: float, a: str, b: str, tol: float = 0.6e-9) -> bool:
    lo, hi = sorted((float(a), float(b)))
    return lo - tol <= value <= hi + tol


def test_every_value_agrees_with_chronyc(pair: ChronyPair) -> None:
    # chronyd updates once a second (poll 0): retry until nothing moved between the reads.
    for _attempt in range(20):
        before, state, after = _read_around(pair)
        tb, ta = before["tracking"], after["tracking"]
        stable = (tb[3] == ta[3] and before["sourcestats"] == after["sourcestats"]
                  and [s[:6] + s[7:] for s in before["sources"]]
                  == [s[:6] + s[7:] for s in after["sources"]])
        if stable:
            break
        time.sleep(0.3)
    else:
        pytest.fail("chronyd updated during every attempt")
    t = state.tracking
    # tracking: refid, name, stratum, ref time, ..., leap
    sec, ns = divmod(t.ref_time_ns, 1_000_000_000)
    assert [f"{t.ref_id:08X}", t.name, str(t.stratum), f"{sec}.{ns:09d}"] == tb[:4]
    assert [_f9(t.last_offset), _f9(t.rms_offset), _f3(t.freq_ppm), _f3(t.resid_freq_ppm),
            _f3(t.skew_ppm), _f9(t.root_delay), f"{t.last_update_interval:.1f}",
            t.leap_text] == [tb[5], tb[6], tb[7], tb[8], tb[9], tb[10], tb[12], tb[13]]
    # These two change continuously: the probe's lies between the reads around it.
    assert _within(t.current_correction, tb[4], ta[4])
    assert _within(t.root_dispersion, tb[11], ta[11])
    # The generic offset is minus "System time"; the error bound its formula.
    assert state.offset == -t.current_correction
    assert state.error_bound == abs(state.offset) + t.root_dispersion + t.root_delay / 2
    # sources: mode, state, name, stratum, poll, reach, lastRx, adjusted, measured, error
    assert len(state.sources) == len(before["sources"]) == 1
    for src, cb, ca in zip(state.sources, before["sources"], after["sources"], strict=True):
        d = src.data
        assert [d.mode_char, d.state_char, src.name, str(d.stratum), str(d.poll),
                f"{d.reachability:o}"] == cb[:6]
        assert int(cb[6]) <= d.since_sample <= int(ca[6])
        assert [_f9(d.latest_meas), _f9(d.orig_latest_meas), _f9(d.latest_meas_err)] == cb[7:]
    # sourcestats: name, NP, NR, span, frequency, skew, offset, std dev
    for src, cb in zip(state.sources, before["sourcestats"], strict=True):
        s = src.stats
        assert s is not None
        assert [src.name, str(s.n_samples), str(s.n_runs), str(s.span_seconds),
                _f3(s.resid_freq_ppm), _f3(s.skew_ppm), _f9(s.est_offset), _f9(s.sd)] == cb
        assert src.configured_name == "127.0.0.1" and src.auth is not None
        assert src.auth.mode_name == "none"
    # JSON (CLI) keys in base units: ratios, not ppm.
    data = state.as_json()
    assert data["frequency_ratio"] == pytest.approx(t.freq_ppm * 1e-6, rel=1e-12)
    assert data["sources"][0]["frequency_ratio"] == pytest.approx(
        state.sources[0].stats.resid_freq_ppm * 1e-6, rel=1e-12)


def test_serverstats_lie_between_chronyc_reads(pair: ChronyPair) -> None:
    before = pair.chronyc("serverstats")[0]
    state = asyncio.run(probe_once(pair.socket))
    after = pair.chronyc("serverstats")[0]
    assert state.server_stats is not None
    hits = state.server_stats.counters["cmd_hits"]
    # chronyc counts its own request; the probe's poll made several of its own
    assert int(before[2]) < hits < int(after[2])
    assert state.server_stats.counters["ntp_hits"] == int(before[0]) == 0


def test_udp_gives_the_monitoring_reports(pair: ChronyPair) -> None:
    unix = asyncio.run(probe_once(pair.socket))
    udp = asyncio.run(probe_once(None, HostPort("127.0.0.1", pair.cmdport)))
    assert (udp.tracking.ref_id, udp.tracking.stratum) == (unix.tracking.ref_id,
                                                           unix.tracking.stratum)
    assert [s.name for s in udp.sources] == [s.name for s in unix.sources]
    assert all(s.stats is not None for s in udp.sources)
    # serverstats and authdata are refused over the network: absent, not an error
    assert udp.server_stats is None and all(s.auth is None for s in udp.sources)


def test_errors_are_typed(pair: ChronyPair, tmp_path: Path) -> None:
    with pytest.raises(ChronyProbeError) as err:
        asyncio.run(probe_once(str(tmp_path / "missing.sock")))
    assert err.value.reason == "no_socket"
    with pytest.raises(ChronyProbeError) as err:
        asyncio.run(probe_once(None, HostPort("127.0.0.1", free_udp_port()), timeout=0.3))
    assert err.value.reason in ("timeout", "no_socket")


def test_source_metrics_and_cleanup(pair: ChronyPair) -> None:
    leftovers = set(glob.glob("/tmp/timemon-chrony-*/client.sock"))

    async def run() -> ChronySource:
        source = ChronySource("chronyd", pair.socket, interval=1.0)
        try:
            assert await source.poll_once() is not None
            await source.poll_once()
            assert source.client.local_path is not None
            assert Path(source.client.local_path).exists()
            return source
        finally:
            await source.close()

    source = asyncio.run(run())
    assert set(glob.glob("/tmp/timemon-chrony-*/client.sock")) == leftovers
    assert source.up and source.samples_total == 2
    state = source.state
    assert state is not None
    assert source.offset == -state.tracking.current_correction
    assert source.error_bound == pytest.approx(
        abs(source.offset) + state.tracking.root_dispersion + state.tracking.root_delay / 2)
    assert source.root_distance == pytest.approx(
        state.tracking.root_dispersion + state.tracking.root_delay / 2)
    out = Families()
    source.collect(out)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for fam in out for s in fam.samples}
    lv = (("kind", "chrony"), ("source", "chronyd"))
    addr = (("address", "127.0.0.1"), ("kind", "chrony"), ("source", "chronyd"))
    assert got[("timemon_offset_seconds", lv)] == source.offset
    assert got[("timemon_chrony_stratum", lv)] == 2
    assert got[("timemon_chrony_frequency_ratio", lv)] == state.tracking.freq_ppm * 1e-6
    assert got[("timemon_chrony_source_state", addr)] == 0  # selected
    assert got[("timemon_chrony_source_reachability", addr)] > 0
    assert got[("timemon_chrony_sourcestats_samples", addr)] >= 4
    assert ("timemon_chrony_reference_info", (("kind", "chrony"), ("ref_id", "7F000001"),
            ("reference", "127.0.0.1"), ("source", "chronyd"))) in got
    assert ("timemon_chrony_server_requests_total", (*lv[:1], ("service", "cmd"),
                                                     lv[1])) in got


def test_cli(pair: ChronyPair, timemon_exe: str, tmp_path: Path) -> None:
    ok = subprocess.run([timemon_exe, "probe", "chrony", "--socket", pair.socket, "--json"],
                        capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["stratum"] == 2 and data["reference"] == "127.0.0.1"
    assert data["offset_seconds"] == -data["system_time_correction_seconds"]
    assert data["sources"][0]["state"] == "selected"
    text = subprocess.run([timemon_exe, "probe", "chrony", "--socket", pair.socket],
                          capture_output=True, text=True, timeout=20)
    assert text.returncode == 0 and "reference 7F000001 (127.0.0.1)" in text.stdout
    missing = subprocess.run([timemon_exe, "probe", "chrony", "--socket",
                              str(tmp_path / "none.sock")], capture_output=True, text=True,
                             timeout=20)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    both = subprocess.run([timemon_exe, "probe", "chrony", "--socket", pair.socket,
                           "--address", "127.0.0.1"], capture_output=True, text=True,
                          timeout=20)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1


def test_status_reply_from_chronyd_is_a_typed_error(pair: ChronyPair) -> None:
    async def ask() -> None:
        from timemon.probes.chrony import ChronyClient

        client = ChronyClient(pair.socket)
        try:
            await client.request(cp.REQ_SOURCE_DATA, (99).to_bytes(4, "big"))
        finally:
            client.close()

    with pytest.raises(cp.ChronyStatusError) as err:
        asyncio.run(ask())
    assert err.value.reason == "no_such_source"
