"""The agent's side of traceability: checkpoints signed with the configured key, the
reference recorded for reports, and a bad key refused at start."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from test_agent_e2e import free_tcp_port, samples, scrape, start_agent, stop, wait_for

from timemon.chain import generate_keypair
from timemon.simulator import ResponderThread


def config_text(store: Path, port: int, key: Path) -> str:
    return f"""
[agent]
store = "{store}"
signing_key = "{key}"

[[source]]
name = "sim"
kind = "ntp"
address = "127.0.0.1:{port}"
interval = 1
lab = true
"""


def test_signed_checkpoints_and_reference_notes(tmp_path: Path, responders: ResponderThread,
                                                timemon_exe: str) -> None:
    r = responders.add(refid=b"GPS\0")
    private, public = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    generate_keypair(str(private), str(public))
    store, config = tmp_path / "s.db", tmp_path / "timemon.toml"
    config.write_text(config_text(store, r.port, private))
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        key = ("timemon_samples_total", (("kind", "ntp"), ("source", "sim")))
        wait_for(lambda: samples(scrape(port)).get(key, 0) >= 3)
        first = samples(scrape(port))[key]
        # The server changes its reference: the store must note the new one (the agent
        # skips the comparison while the source gives the same info dict).
        r.stratum, r.refid = 2, bytes([192, 0, 2, 7])
        wait_for(lambda: samples(scrape(port)).get(key, 0) >= first + 3)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    # A clean stop writes a checkpoint, signed with the configured key.
    result = subprocess.run([timemon_exe, "verify", str(store), "--public-key", str(public)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    other_private, other_public = tmp_path / "k2.pem", tmp_path / "k2.pub.pem"
    generate_keypair(str(other_private), str(other_public))
    result = subprocess.run([timemon_exe, "verify", str(store), "--public-key",
                             str(other_public)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    with sqlite3.connect(store) as db:
        meta = dict(db.execute("SELECT key, value FROM source_meta").fetchall())
    assert meta["refid"] == "192.0.2.7" and meta["server"] == f"127.0.0.1:{r.port}"
    assert meta["stratum"] == "2"


def test_unreadable_signing_key_exits_2(tmp_path: Path, timemon_exe: str) -> None:
    config = tmp_path / "timemon.toml"
    config.write_text(config_text(tmp_path / "s.db", 123, tmp_path / "missing.pem"))
    started = time.monotonic()
    result = subprocess.run([timemon_exe, "agent", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and time.monotonic() - started < 20
    assert "signing_key" in result.stderr and len(result.stderr.strip().splitlines()) == 1
