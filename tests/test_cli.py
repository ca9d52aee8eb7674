"""``timemon probe`` against real chronyd, and the CLI's exit-code contract."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import Chronyd

REQUIRED_KEYS = {"source", "offset_seconds", "delay_seconds", "stratum", "leap", "refid",
                 "root_delay_seconds", "root_dispersion_seconds"}


def run(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def test_probe_ntp_json_against_chronyd(chronyd_server: Chronyd, timemon_exe: str) -> None:
    result = run(timemon_exe, "probe", "ntp", f"127.0.0.1:{chronyd_server.port}", "--lab",
                 "--count", "20", "--interval", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 20
    for rec in records:
        assert rec.keys() >= REQUIRED_KEYS
        assert rec["stratum"] == 1 and rec["leap"] == 0
        assert rec["refid"] == "127.127.1.1"  # chronyd's local reference
        assert abs(rec["offset_seconds"]) < 200e-6  # one clock: true offset 0
        assert 0 < rec["delay_seconds"] < 1e-3
        assert rec["kernel_timestamps"] is True
    # chronyd serves the interleaved mode from its third reply to a client on; from
    # then on the server's transmit stamp is its kernel's, and the delay shrinks.
    assert [r["interleaved"] for r in records[:2]] == [False, False]
    assert all(r["interleaved"] for r in records[2:])
    basic = [r["delay_seconds"] for r in records[:2]]
    interleaved = sorted(r["delay_seconds"] for r in records[2:])
    assert interleaved[len(interleaved) // 2] < min(basic)


def test_probe_ntp_basic_mode_never_interleaves(chronyd_server: Chronyd,
                                                timemon_exe: str) -> None:
    result = run(timemon_exe, "probe", "ntp", f"127.0.0.1:{chronyd_server.port}", "--lab",
                 "--count", "5", "--interval", "0.05", "--basic", "--json")
    assert result.returncode == 0
    assert [json.loads(line)["interleaved"] for line in result.stdout.splitlines()] == [False] * 5


def test_probe_ntp_human_output(chronyd_server: Chronyd, timemon_exe: str) -> None:
    result = run(timemon_exe, "probe", "ntp", f"127.0.0.1:{chronyd_server.port}")
    assert result.returncode == 0
    assert result.stdout.startswith(f"server 127.0.0.1:{chronyd_server.port}, stratum 1, offset ")


def test_probe_ntp_no_reply_exits_1(timemon_exe: str) -> None:
    from conftest import free_udp_port

    result = run(timemon_exe, "probe", "ntp", f"127.0.0.1:{free_udp_port()}", "--timeout", "0.2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("timemon: 127.0.0.1:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probe", "ntp", "127.0.0.1", "--interval", "0.5"], "at least 1 s"),
        (["probe", "ntp", "127.0.0.1", "--lab", "--interval", "0.001"], "at least 0.01 s"),
        (["probe", "ntp", "[::1"], "missing ']'"),
        (["probe", "ntp", "bad host!"], "not a host name"),
        (["probe", "ntp", "127.0.0.1", "--count", "0"], "--count"),
        (["agent", "--listen", "nowhere:"], "port"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2(timemon_exe: str, args: list[str], message: str) -> None:
    result = run(timemon_exe, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_probe_kernel_json(timemon_exe: str) -> None:
    result = run(timemon_exe, "probe", "kernel", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["sync_status"] in (0, 1)
    assert data["clock_state_name"].startswith("TIME_")


def test_version_and_help(timemon_exe: str) -> None:
    from timemon import __version__

    assert __version__ in run(timemon_exe, "--version").stdout
    help_text = run(timemon_exe, "--help").stdout
    for command in ("agent", "probe", "check-config"):
        assert command in help_text
