"""The agent with the node's chronyd (kind "chrony") next to an NTP source, as a subprocess."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import find_binary, free_tcp_port
from test_agent_e2e import samples, scrape, start_agent, stop, wait_for
from test_chrony_live import ChronyPair

from timemon.config import ConfigError, default_config, parse_config


def test_agent_serves_chrony_metrics_and_crosschecks(timemon_exe: str) -> None:
    promtool = find_binary("promtool")
    find_binary("chronyd")
    with tempfile.TemporaryDirectory(prefix="timemon-chrony-e2e-") as tmp:
        base = Path(tmp)
        pair = ChronyPair(base)
        proc = None
        try:
            config = base / "timemon.toml"
            config.write_text(f"""
[agent]
store = ""

[[source]]
kind = "chrony"
socket = "{pair.socket}"
interval = 1

[[source]]
name = "lab-chronyd"
kind = "ntp"
address = "127.0.0.1:{pair.server.port}"
interval = "1s"
lab = true
""")
            port = free_tcp_port()
            proc = start_agent(timemon_exe, config, port)
            chrony = (("kind", "chrony"), ("source", "chronyd"))
            ntp = (("kind", "ntp"), ("source", "lab-chronyd"))

            def ready() -> dict | None:
                m = samples(scrape(port))
                if m.get(("timemon_source_up", chrony)) == 1.0 and \
                        m.get(("timemon_source_up", ntp)) == 1.0 and \
                        ("timemon_leap_consistent", ()) in m and \
                        ("timemon_falseticker", chrony) in m and \
                        ("timemon_falseticker", ntp) in m:
                    return m
                return None

            metrics = wait_for(ready, timeout=30)
            text = scrape(port)
        finally:
            code, err = stop(proc) if proc is not None else (0, "")
            pair.stop()
    assert code == 0 and "Traceback" not in err, err
    offset = metrics[("timemon_offset_seconds", chrony)]
    assert offset == -metrics[("timemon_chrony_system_time_correction_seconds", chrony)]
    assert abs(offset) < 1e-3  # one clock on loopback
    assert metrics[("timemon_chrony_stratum", chrony)] == 2
    assert metrics[("timemon_error_bound_seconds", chrony)] >= abs(offset)
    assert metrics[("timemon_chrony_source_state", (("address", "127.0.0.1"), *chrony))] in (
        0.0, 4.0, 5.0)
    # chronyd and the NTP probe watch one clock: they agree, nobody is a falseticker.
    assert metrics[("timemon_falseticker", chrony)] == 0.0
    assert metrics[("timemon_falseticker", ntp)] == 0.0
    assert metrics[("timemon_reference_majority", ())] == 1.0
    assert metrics[("timemon_leap_consistent", ())] == 1.0
    assert metrics[("timemon_ntp_stratum", ntp)] == 1
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_default_config_reads_the_local_chronyd_when_its_socket_exists(tmp_path: Path) -> None:
    sock = tmp_path / "chronyd.sock"
    assert all(sc.kind != "chrony" for sc in default_config((), chrony_socket=str(sock)).sources)
    sock.touch()
    chrony = [sc for sc in default_config((), chrony_socket=str(sock)).sources
              if sc.kind == "chrony"]
    assert len(chrony) == 1 and chrony[0].name == "chronyd"
    assert chrony[0].options["socket"] == str(sock)


def test_config_keys(tmp_path: Path) -> None:
    cfg = parse_config('[[source]]\nkind = "chrony"\n')
    (sc,) = cfg.sources
    assert (sc.name, sc.options["socket"], sc.options["address"], sc.interval) == (
        "chronyd", "/run/chrony/chronyd.sock", None, 16.0)
    cfg = parse_config('[[source]]\nkind = "chrony"\naddress = "192.0.2.1"\n')
    assert str(cfg.sources[0].options["address"]) == "192.0.2.1:323"
    for body, expected in (
            ('socket = "rel.sock"', "absolute path"),
            ('socket = "/a"\naddress = "x"', "not both"),
            ("interval = 0.1", "below the floor"),
            ('adress = "x"', "unknown key")):
        with pytest.raises(ConfigError, match=expected):
            parse_config(f'[[source]]\nkind = "chrony"\n{body}\n', "t.toml")
