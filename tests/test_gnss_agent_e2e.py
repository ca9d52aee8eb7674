"""``timemon agent`` with a gnss source on a pty fed with a real capture: the metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import find_binary, free_tcp_port
from gnss_support import PtyPlayer, epoch_chunks, wait_opened
from test_agent_e2e import samples, scrape, start_agent, stop, wait_for

pytestmark = pytest.mark.integration

GNSS_FAMILIES = ("fix_mode", "fix_status", "satellites_used", "satellites_visible", "pdop",
                 "tdop", "time_accuracy_seconds", "qerr_seconds", "leap_seconds",
                 "survey_in_active", "survey_in_valid", "survey_in_mean_accuracy_meters",
                 "cn0_mean_dbhz")


def test_agent_serves_gnss_metrics(tmp_path: Path, timemon_exe: str) -> None:
    promtool = find_binary("promtool")
    player = PtyPlayer(tmp_path / "ttyGNSS")
    config = tmp_path / "timemon.toml"
    config.write_text(f"""
[agent]
store = "{tmp_path / 'samples.db'}"

[[source]]
name = "m8t"
kind = "gnss"
device = "{player.device}"
baud = 115200
fixed_delay = "50ms"
""")
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        wait_opened(proc.pid, player.device)
        player.play(epoch_chunks("u-blox-m8t-time.log"), gap=0.02)
        labels = (("kind", "gnss"), ("source", "m8t"))
        metrics = wait_for(lambda: (m := samples(scrape(port))).get(
            ("timemon_samples_total", labels), 0) >= 50 and m)
        text = scrape(port)
        metrics = samples(text)
        assert metrics[("timemon_source_up", labels)] == 1.0
        assert metrics[("timemon_gnss_fix_mode", labels)] == 3
        assert metrics[("timemon_gnss_fix_status", labels)] == 7
        assert metrics[("timemon_gnss_leap_seconds", labels)] == 18
        for family in GNSS_FAMILIES:
            assert (f"timemon_gnss_{family}", labels) in metrics, family
        offset_keys = [k for k in metrics if k[0] == "timemon_offset_seconds"
                       and ("source", "m8t") in k[1]]
        assert offset_keys and ("quality", "serial") in offset_keys[0][1]
        # Per-satellite data never becomes labels.
        assert not any(name.startswith("timemon_gnss") and len(lab) > 2
                       for name, lab in metrics)
        player.wait()
    finally:
        code, err = stop(proc)
        player.close()
    assert code == 0, err
    assert "Traceback" not in err
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr
