"""The PTP probe against real ptp4l (linuxptp) in two network namespaces, checked with pmc.

One namespace pair, joined by a veth pair with unique names, is shared by the
module: a grandmaster ptp4l (priority1 10) and a slaveOnly ptp4l, both with
software timestamps and ``free_running 1`` (the system clock is never
steered), each with its own socket in the module's temporary directory.  Short
announce (0.25 s, timeout 3) and sync (0.125 s) intervals keep the wall time
small.  The tests that only read come first; the last one stops the
grandmaster and starts another.  Processes, namespaces and files are removed in
the fixture's finaliser, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REQUIRE_BINARIES, find_binary, free_tcp_port
from test_agent_e2e import samples, scrape, start_agent, stop, wait_for
from timemon.probes.ptp import PtpState, probe_once

ANNOUNCE_INTERVAL = 0.25  # logAnnounceInterval -2
ANNOUNCE_RECEIPT_TIMEOUT = 3
# ptp4l arms the announce timer at random within one more interval (port.c set_tmo_random)
ANNOUNCE_TIMEOUT_MAX = (ANNOUNCE_RECEIPT_TIMEOUT + 1) * ANNOUNCE_INTERVAL
NEW_GM_IDENTITY = "0a0b0c.fffe.0d0e0f"

PTP4L_CONF = """[global]
time_stamping           software
free_running            1
logAnnounceInterval     -2
announceReceiptTimeout  {timeout}
logSyncInterval         -3
logMinDelayReqInterval  -3
uds_address             {uds}
{extra}
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        message = "network namespaces need root"
        if REQUIRE_BINARIES:
            pytest.fail(message)
        pytest.skip(message)


class PtpNet:
    """Two namespaces joined by a veth pair, and the ptp4l processes started in them."""

    def __init__(self) -> None:
        self.ip = find_binary("ip")
        self.ptp4l = find_binary("ptp4l")
        self.pmc_bin = find_binary("pmc")
        sfx = secrets.token_hex(3)
        self.ns = {"gm": f"tmptpgm{sfx}", "slave": f"tmptpsl{sfx}"}
        self.ifname = {"gm": f"tmpa{sfx}", "slave": f"tmpb{sfx}"}
        self.dir = Path(tempfile.mkdtemp(prefix="timemon-ptp-live-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self._pmc_count = 0
        self._made_ns: list[str] = []

    def sock(self, role: str) -> str:
        return str(self.dir / f"{role}.sock")

    def setup(self) -> None:
        for ns in self.ns.values():
            self._run("netns", "add", ns)
            self._made_ns.append(ns)
        self._run("link", "add", self.ifname["gm"], "type", "veth", "peer", "name",
                  self.ifname["slave"])
        for number, role in enumerate(("gm", "slave"), start=1):
            ns, ifname = self.ns[role], self.ifname[role]
            self._run("link", "set", ifname, "netns", ns)
            self._run("-n", ns, "addr", "add", f"10.213.0.{number}/24", "dev", ifname)
            self._run("-n", ns, "link", "set", "lo", "up")
            self._run("-n", ns, "link", "set", ifname, "up")

    def _run(self, *args: str) -> None:
        subprocess.run([self.ip, *args], check=True, capture_output=True, timeout=10)

    def start(self, role: str, name: str, extra: str = "") -> subprocess.Popen:
        """ptp4l named ``name`` on ``role``'s interface, its socket at ``sock(role)``."""
        conf = self.dir / f"{name}.cfg"
        conf.write_text(PTP4L_CONF.format(timeout=ANNOUNCE_RECEIPT_TIMEOUT,
                                          uds=self.sock(role), extra=extra))
        log = open(self.dir / f"{name}.log", "w")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(
                [self.ip, "netns", "exec", self.ns[role], self.ptp4l, "-f", str(conf),
                 "-i", self.ifname[role], "-4", "-m"], stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.procs[name] = proc
        wait_for(lambda: os.path.exists(self.sock(role)) or proc.poll() is not None, 10)
        assert proc.poll() is None, self.log(name)
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def pmc(self, role: str, *commands: str) -> dict[str, dict[str, str]]:
        """pmc's answer, by management id: {"TIME_STATUS_NP": {"master_offset": "-703", ...}}."""
        self._pmc_count += 1
        own = self.dir / f"pmc{self._pmc_count}.sock"
        result = subprocess.run([self.pmc_bin, "-u", "-b", "0", "-s", self.sock(role),
                                 "-i", str(own), *commands],
                                capture_output=True, text=True, timeout=10)
        out: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in result.stdout.splitlines():
            header = re.search(r"RESPONSE MANAGEMENT (\w+)", line)
            if header:
                current = out.setdefault(header.group(1), {})
            elif current is not None and line.startswith("\t\t"):
                key, _, value = line.strip().partition(" ")
                current[key] = value.strip()
        return out

    def port_state(self, role: str) -> str | None:
        return self.pmc(role, "GET PORT_DATA_SET").get("PORT_DATA_SET", {}).get("portState")

    def bring_slave_up(self) -> None:
        """free_running keeps the port UNCALIBRATED; SYNCHRONIZATION_UNCERTAIN_NP 0 lets it
        go to SLAVE (DESIGN.md)."""
        wait_for(lambda: self.port_state("slave") in ("UNCALIBRATED", "SLAVE"), 20)
        deadline = time.monotonic() + 20
        while self.port_state("slave") != "SLAVE":
            assert time.monotonic() < deadline, self.log("slave")
            self.pmc("slave", "SET SYNCHRONIZATION_UNCERTAIN_NP 0")
            time.sleep(0.5)

    def close(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):  # keep cleaning up
                self.stop(name)
        for ns in self._made_ns:  # deleting a namespace deletes the veth end inside it
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True, timeout=10)
        # A veth pair still in this namespace (setup failed before moving it).
        subprocess.run([self.ip, "link", "del", self.ifname["gm"]], capture_output=True,
                       timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def net() -> Iterator[PtpNet]:
    _need_root()
    net = PtpNet()
    try:
        net.setup()
        net.start("gm", "gm", "priority1 10")
        time.sleep(1.0)  # the two a second apart (DESIGN.md)
        net.start("slave", "slave", "slaveOnly 1")
        net.bring_slave_up()
        yield net
    finally:
        net.close()
        assert not any(ns in _netns_list() for ns in net.ns.values())


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def read(sock: str, timeout: float = 1.0) -> PtpState:
    return asyncio.run(probe_once(sock, timeout=timeout))


# -- reading: the probe and pmc see the same ptp4l ----------------------------------------


def test_probe_reads_the_slave_like_pmc(net: PtpNet) -> None:
    gm_identity = net.pmc("gm", "GET DEFAULT_DATA_SET")["DEFAULT_DATA_SET"]["clockIdentity"]
    state = read(net.sock("slave"))
    data = state.as_json()
    assert data["port_state"] == "SLAVE" and state.port_state == 9
    assert data["gm_identity"] == gm_identity and data["gm_present"] is True
    ref = net.pmc("slave", "GET PARENT_DATA_SET", "GET TIME_PROPERTIES_DATA_SET",
                  "GET CURRENT_DATA_SET", "GET DEFAULT_DATA_SET")
    parent, tp = ref["PARENT_DATA_SET"], ref["TIME_PROPERTIES_DATA_SET"]
    assert parent["grandmasterIdentity"] == data["gm_identity"]
    assert int(parent["gm.ClockClass"]) == data["clock_class"] == 248
    assert int(parent["gm.ClockAccuracy"], 16) == data["clock_accuracy"]
    assert int(parent["gm.OffsetScaledLogVariance"], 16) == data["offset_scaled_log_variance"]
    assert int(parent["grandmasterPriority1"]) == data["priority1"] == 10
    assert int(parent["grandmasterPriority2"]) == data["priority2"]
    assert parent["parentPortIdentity"] == data["parent_port_identity"]
    assert int(ref["CURRENT_DATA_SET"]["stepsRemoved"]) == data["steps_removed"] == 1
    assert ref["DEFAULT_DATA_SET"]["clockIdentity"] == data["clock_identity"]
    assert int(tp["currentUtcOffset"]) == data["utc_offset_seconds"]
    for key in ("leap61", "leap59", "ptpTimescale", "timeTraceable", "frequencyTraceable"):
        snake = {"ptpTimescale": "ptp_timescale", "timeTraceable": "time_traceable",
                 "frequencyTraceable": "frequency_traceable"}.get(key, key)
        assert bool(int(tp[key])) == data[snake], key
    assert bool(int(tp["currentUtcOffsetValid"])) == data["utc_offset_valid"]
    assert int(tp["timeSource"], 16) == data["time_source"]


def test_offset_is_exactly_what_pmc_shows_for_the_same_sync(net: PtpNet) -> None:
    """Read until pmc and the probe see the same sync (same ingress_time): then
    master_offset must be identical, sign included; path delays of the same size."""
    delays: list[tuple[float, float]] = []
    for _ in range(40):
        state = read(net.sock("slave"))
        ref = net.pmc("slave", "GET TIME_STATUS_NP", "GET CURRENT_DATA_SET")
        ts, cds = ref["TIME_STATUS_NP"], ref["CURRENT_DATA_SET"]
        delays.append((state.mean_path_delay, float(cds["meanPathDelay"]) * 1e-9))
        assert state.time_status is not None
        if int(ts["ingress_time"]) == state.time_status.ingress_time_ns:
            assert state.time_status.master_offset_ns == int(ts["master_offset"])
            assert state.offset == int(ts["master_offset"]) / 1e9
            assert state.offset_origin == "TIME_STATUS_NP"
            break
    else:
        pytest.fail("pmc and the probe never read the same sync in 40 tries")
    # One clock on both ends: the true offset is 0, software stamps leave microseconds.
    assert abs(state.offset or 1.0) < 100e-6
    for ours, theirs in delays:
        assert 0 < ours < 1e-3 and 0 < theirs < 1e-3
        assert abs(ours - theirs) < 20e-6


def test_message_counters_match_pmc(net: PtpNet) -> None:
    before = net.pmc("slave", "GET PORT_STATS_NP")["PORT_STATS_NP"]
    state = read(net.sock("slave"))
    after = net.pmc("slave", "GET PORT_STATS_NP")["PORT_STATS_NP"]
    messages = state.messages()
    assert messages is not None
    for (direction, message), count in messages.items():
        # pmc's names: rx_Sync, tx_Delay_Req, rx_Pdelay_Resp_Follow_Up, ...
        key = f"{direction}_" + "_".join(p.capitalize() for p in message.split("_"))
        lo, hi = int(before[key]), int(after[key])
        assert lo <= count <= hi, (key, lo, count, hi)
    assert messages[("rx", "sync")] > 0 and messages[("tx", "delay_req")] > 0
    assert messages[("tx", "sync")] == 0  # a slave does not send Sync


def test_probe_reads_the_grandmaster(net: PtpNet) -> None:
    state = read(net.sock("gm"))
    assert state.port_state == 6  # MASTER
    assert not state.gm_present and state.offset is None
    assert state.as_json()["gm_identity"] == state.as_json()["clock_identity"]


def test_cli_json_and_errors(net: PtpNet, timemon_exe: str, tmp_path: Path) -> None:
    result = subprocess.run([timemon_exe, "probe", "ptp", "--uds", net.sock("slave"), "--json"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gm = net.pmc("gm", "GET DEFAULT_DATA_SET")["DEFAULT_DATA_SET"]["clockIdentity"]
    assert data["port_state"] == "SLAVE" and data["gm_identity"] == gm
    for key in ("offset_seconds", "mean_path_delay_seconds", "gm_present", "clock_class",
                "steps_removed", "utc_offset_seconds", "time_traceable"):
        assert key in data and data[key] is not None, key
    text = subprocess.run([timemon_exe, "probe", "ptp", "--uds", net.sock("slave")],
                          capture_output=True, text=True, timeout=20)
    assert text.returncode == 0 and f"grandmaster {gm} present" in text.stdout
    for args, expected in (
        (["--uds", str(tmp_path / "nothing")], "does not exist"),
        (["--uds", net.sock("slave"), "--domain", "7", "--timeout", "0.3"], "domain 7"),
    ):
        result = subprocess.run([timemon_exe, "probe", "ptp", *args], capture_output=True,
                                text=True, timeout=20)
        assert result.returncode == 1
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


# -- changes: the grandmaster goes away, and another one comes ----------------------------


def _agent_config(path: Path, net: PtpNet, interval: float) -> None:
    path.write_text(f"""
[agent]
store = "{path.parent / 'samples.db'}"

[[source]]
name = "slave"
kind = "ptp"
uds = "{net.sock('slave')}"
interval = {interval}

[[source]]
name = "gm"
kind = "ptp"
uds = "{net.sock('gm')}"
interval = {interval}

[[source]]
name = "absent"
kind = "ptp"
uds = "{path.parent / 'no-ptp4l'}"
interval = {interval}
""")


def _labels(source: str, **extra: str) -> tuple:
    return tuple(sorted({"source": source, "kind": "ptp", **extra}.items()))


def test_agent_follows_gm_loss_restart_and_change(net: PtpNet, timemon_exe: str,
                                                  tmp_path: Path) -> None:
    promtool = find_binary("promtool")
    interval = 0.5
    config = tmp_path / "timemon.toml"
    _agent_config(config, net, interval)
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    old_gm = net.pmc("gm", "GET DEFAULT_DATA_SET")["DEFAULT_DATA_SET"]["clockIdentity"]
    slave = _labels("slave")
    try:
        # 1. The slave: up, SLAVE, the grandmaster, an offset; the absent ptp4l: down.
        def slave_ready() -> dict | None:
            m = samples(scrape(port))
            return m if (m.get(("timemon_source_up", slave)) == 1.0
                         and m.get(("timemon_ptp_port_state", slave)) == 9
                         and m.get(("timemon_samples_total", slave), 0) >= 2
                         and m.get(("timemon_probe_errors_total",
                                    _labels("absent", reason="no_socket")), 0) >= 1
                         ) else None

        m = wait_for(slave_ready, 20)
        assert m[("timemon_ptp_gm_info", _labels("slave", gm_identity=old_gm))] == 1
        assert m[("timemon_ptp_gm_present", slave)] == 1
        assert m[("timemon_ptp_clock_class", slave)] == 248
        assert m[("timemon_ptp_steps_removed", slave)] == 1
        assert m[("timemon_ptp_utc_offset_seconds", slave)] == 37
        assert m[("timemon_ptp_gm_changes_total", slave)] == 0
        assert abs(m[("timemon_offset_seconds", slave)]) < 100e-6
        assert 0 < m[("timemon_delay_seconds", slave)] < 1e-3
        assert m[("timemon_ptp_messages_total",
                  _labels("slave", direction="rx", message="sync"))] > 0
        assert m[("timemon_ptp_port_state", _labels("gm"))] == 6
        assert m[("timemon_source_up", _labels("gm"))] == 0  # a master has no reference
        assert m[("timemon_source_up", _labels("absent"))] == 0
        assert ("timemon_ptp_port_state", _labels("absent")) not in m
        text = scrape(port)
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=20)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), \
            check.stdout + check.stderr

        # 2. Stop the grandmaster: the slave's ptp4l loses it within the announce timeout.
        stopped_at = time.monotonic()
        net.stop("gm")
        while True:
            state = read(net.sock("slave"), timeout=0.5)
            if not state.gm_present:
                break
            assert time.monotonic() - stopped_at < 10, "the slave never lost its grandmaster"
            time.sleep(0.05)
        lost_after = time.monotonic() - stopped_at
        assert state.port_state != 9 and state.offset is None
        assert lost_after < ANNOUNCE_TIMEOUT_MAX + 0.5, lost_after
        print(f"grandmaster loss seen after {lost_after:.3f} s "
              f"(announce timeout {ANNOUNCE_TIMEOUT_MAX:g} s at most)")
        m = wait_for(lambda: (x := samples(scrape(port))).get(
            ("timemon_ptp_gm_present", slave)) == 0 and x, 5)
        assert m[("timemon_ptp_port_state", slave)] != 9
        assert m[("timemon_source_up", slave)] == 0
        assert ("timemon_offset_seconds", slave) not in m
        gm_errors = ("timemon_probe_errors_total", _labels("gm", reason="no_socket"))
        wait_for(lambda: samples(scrape(port)).get(gm_errors, 0) >= 1, 5)

        # 3. Another grandmaster, with its own clockIdentity, at the same socket path:
        #    the agent's "gm" source recovers within two intervals, the slave counts a change.
        net.start("gm", "gm2", f"priority1 10\nclockIdentity {NEW_GM_IDENTITY}")
        wait_for(lambda: "DEFAULT_DATA_SET" in net.pmc("gm", "GET DEFAULT_DATA_SET"), 10)
        answering_at = time.monotonic()
        wait_for(lambda: ("timemon_ptp_port_state", _labels("gm")) in samples(scrape(port)),
                 5)
        recovered_after = time.monotonic() - answering_at
        assert recovered_after <= 2 * interval + 0.3, recovered_after
        print(f"agent read the restarted ptp4l {recovered_after:.3f} s after it answered pmc")
        m = wait_for(lambda: (x := samples(scrape(port))).get(
            ("timemon_ptp_gm_changes_total", slave)) == 1 and x, 15)
        assert m[("timemon_ptp_gm_info", _labels("slave", gm_identity=NEW_GM_IDENTITY))] == 1
        assert m[("timemon_ptp_gm_present", slave)] == 1
        assert not any(name == "timemon_ptp_gm_info" and ("gm_identity", old_gm) in labels
                       for name, labels in m)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "grandmaster changed" in err
