"""The agent as users run it: a subprocess with a config, scraped over HTTP."""

from __future__ import annotations

import math
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Chronyd, find_binary, free_tcp_port
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def start_agent(exe: str, config: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([exe, "agent", "--config", str(config), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {proc.stderr.read()}")
        try:
            scrape(port, "/")
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("agent did not serve HTTP")


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def write_config(path: Path, store: Path, chrony_port: int, extra: str = "") -> None:
    path.write_text(f"""
[agent]
store = "{store}"

[[source]]
name = "lab-chronyd"
kind = "ntp"
address = "127.0.0.1:{chrony_port}"
interval = "1s"
lab = true
{extra}
[[source]]
kind = "kernel"
interval = 1
""")


def test_agent_serves_chronyd_and_kernel_metrics(tmp_path: Path, chronyd_server: Chronyd,
                                                 timemon_exe: str) -> None:
    config, store = tmp_path / "timemon.toml", tmp_path / "state" / "samples.db"
    write_config(config, store, chronyd_server.port)
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        key_up = ("timemon_source_up", (("kind", "ntp"), ("source", "lab-chronyd")))
        metrics = wait_for(lambda: (m := samples(scrape(port))).get(key_up) == 1.0 and m)
        offset = metrics[("timemon_offset_seconds", key_up[1])]
        assert math.isfinite(offset)
        assert abs(offset) < 1e-3  # one clock on loopback: the true offset is 0
        assert metrics[("timemon_ntp_stratum", key_up[1])] == 1
        assert ("timemon_kernel_sync_status", ()) in metrics
        # The kernel is not a reference: no generic offset family for it.
        assert not any(dict(labels).get("kind") == "kernel" for (_n, labels) in metrics)
        from timemon import __version__
        build = [labels for name, labels in metrics if name == "timemon_build_info"]
        assert len(build) == 1 and ("version", __version__) in build[0]
        landing = scrape(port, "/")
        assert "lab-chronyd" in landing and "kernel" in landing
        time.sleep(2.5)  # a few more samples, then a clean stop
        before_stop = samples(scrape(port))[("timemon_samples_total", key_up[1])]
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # SIGTERM finishes in-flight writes: every accepted sample is in the store.
    assert stored >= before_stop


def test_restart_keeps_history(tmp_path: Path, chronyd_server: Chronyd,
                               timemon_exe: str) -> None:
    config, store = tmp_path / "timemon.toml", tmp_path / "samples.db"
    write_config(config, store, chronyd_server.port)
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    wait_for(lambda: '"samples_total": 3' in scrape(port, "/status.json"))
    stop(proc)
    with sqlite3.connect(store) as db:
        first_run = db.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert first_run >= 3
    proc = start_agent(timemon_exe, config, port)
    try:
        status = wait_for(lambda: (t := scrape(port, "/status.json")) and "lab-chronyd" in t and t)
        assert '"last_sample_timestamp_seconds": null' not in status.split("lab-chronyd")[1]
        wait_for(lambda: '"samples_total": 2' in scrape(port, "/status.json"))
    finally:
        stop(proc)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] >= first_run + 2


def test_metrics_pass_promtool_check(tmp_path: Path, chronyd_server: Chronyd,
                                     timemon_exe: str) -> None:
    promtool = find_binary("promtool")
    config = tmp_path / "timemon.toml"
    write_config(config, tmp_path / "s.db", chronyd_server.port)
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        text = wait_for(lambda: (t := scrape(port)) and "timemon_ntp_stratum" in t and t)
    finally:
        stop(proc)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[source]]\nname = "a"\nkind = "ntp"\nadress = "x"\n', "timemon.toml:4"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "127.0.0.1"\ninterval = "2s"\n',
         "below the floor"),
        ("[agent\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, timemon_exe: str, body: str,
                                          expected: str) -> None:
    config = tmp_path / "timemon.toml"
    config.write_text(body)
    result = subprocess.run([timemon_exe, "agent", "--config", str(config)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_store_on_unwritable_path_keeps_measuring(tmp_path: Path, chronyd_server: Chronyd,
                                                  timemon_exe: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = tmp_path / "timemon.toml"
    write_config(config, blocker / "samples.db", chronyd_server.port)
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        key = (("kind", "ntp"), ("source", "lab-chronyd"))
        wait_for(lambda: samples(scrape(port)).get(("timemon_samples_total", key), 0) >= 2)
        metrics = wait_for(lambda: (m := samples(scrape(port)))
                           .get(("timemon_store_errors_total", ()), 0) >= 1 and m)
        assert metrics[("timemon_source_up", key)] == 1.0
        assert metrics[("timemon_store_backlog_samples", ())] >= 1
    finally:
        code, _err = stop(proc)
    assert code == 0


def test_agent_without_config_serves_the_kernel(tmp_path: Path, timemon_exe: str) -> None:
    """What ``make run`` starts: no config file, the kernel source, a systemd-style state dir."""
    import os

    port = free_tcp_port()
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path)}
    proc = subprocess.Popen([timemon_exe, "agent", "--listen", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        text = wait_for(lambda: (t := _try_scrape(port)) and "timemon_kernel_sync_status" in t
                        and t)
        assert "timemon_build_info" in text
    finally:
        code, err = stop(proc)
    assert code == 0, err


def _try_scrape(port: int) -> str | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_live_stability_metrics_within_a_minute(tmp_path: Path, chronyd_server: Chronyd,
                                                timemon_exe: str) -> None:
    config = tmp_path / "timemon.toml"
    write_config(config, tmp_path / "s.db", chronyd_server.port,
                 'masks = ["G.8272-PRTC-A"]\n')
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        labels = (("kind", "ntp"), ("source", "lab-chronyd"), ("tau", "1"))
        started = time.monotonic()
        metrics = wait_for(lambda: (m := samples(scrape(port)))
                           .get(("timemon_allan_deviation", labels)) and m, timeout=60)
        assert time.monotonic() - started < 60
        assert 0 < metrics[("timemon_allan_deviation", labels)] < 1e-4
        assert metrics[("timemon_mtie_seconds", labels)] >= 0
        assert ("timemon_frequency_offset_ratio",
                (("kind", "ntp"), ("source", "lab-chronyd"))) in metrics
        # Polls at least the interval (1 s) apart, a little late: the measured spacing.
        spacing = metrics[("timemon_sample_interval_seconds",
                           (("kind", "ntp"), ("source", "lab-chronyd")))]
        assert 0.9999 < spacing < 1.05
        assert metrics[("timemon_offset_steps_total",
                        (("kind", "ntp"), ("source", "lab-chronyd")))] == 0
        for statistic in ("mtie", "tdev"):
            key = ("timemon_mask_violation", (("kind", "ntp"), ("mask", "G.8272-PRTC-A"),
                                              ("source", "lab-chronyd"),
                                              ("statistic", statistic)))
            assert metrics[key] in (0.0, 1.0)
    finally:
        stop(proc)


def test_stability_after_a_restart_equals_before(tmp_path: Path, responders,
                                                 timemon_exe: str) -> None:
    from timemon.simulator import ResponderClock

    r = responders.add(clock=ResponderClock(offset=0.02, noise=5e-6, seed=8))
    config = tmp_path / "timemon.toml"
    config.write_text(f"""
[agent]
store = "{tmp_path / 's.db'}"

[[source]]
name = "sim"
kind = "ntp"
address = "127.0.0.1:{r.port}"
interval = 1
lab = true
timeout = 0.2
""")
    port = free_tcp_port()

    def stability() -> dict:
        return {k: v for k, v in samples(scrape(port)).items()
                if k[0] in ("timemon_allan_deviation", "timemon_modified_allan_deviation",
                            "timemon_time_deviation_seconds", "timemon_mtie_seconds")}

    proc = start_agent(timemon_exe, config, port)
    try:
        wait_for(lambda: len(stability()) >= 4 * 3, timeout=40)  # taus 1, 2, 4 at least
        r.mode = "silent"  # no new sample from here on
        # The in-flight poll times out, and the statistics fold in the last sample
        # (a young window folds at least every timemon.live.YOUNG_MAX_AGE seconds).
        from timemon.live import YOUNG_MAX_AGE

        time.sleep(YOUNG_MAX_AGE + 2.5)
        before = stability()
    finally:
        stop(proc)
    proc = start_agent(timemon_exe, config, port)
    try:
        after = wait_for(lambda: (s := stability()) and len(s) == len(before) and s)
    finally:
        stop(proc)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key] == pytest.approx(value, rel=1e-9), key
