"""`timemon status` against a running agent (NTP on chronyd, the kernel; a mask
configured) and against no agent."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Chronyd, free_tcp_port
from test_agent_e2e import samples, scrape, start_agent, stop, wait_for


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, chronyd_server: Chronyd,
          timemon_exe: str) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("status")
    config = tmp / "timemon.toml"
    config.write_text(f"""
[agent]
store = "{tmp / 'samples.db'}"

[[source]]
name = "lab-chronyd"
kind = "ntp"
address = "127.0.0.1:{chronyd_server.port}"
interval = "1s"
lab = true
masks = ["G.8272-PRTC-A"]

[[source]]
name = "gone"
kind = "ntp"
address = "127.0.0.1:{free_tcp_port()}"
interval = "1s"
lab = true
timeout = "0.2s"

[[source]]
kind = "kernel"
interval = 1
""")
    port = free_tcp_port()
    proc = start_agent(timemon_exe, config, port)
    try:
        key = (("kind", "ntp"), ("source", "lab-chronyd"), ("tau", "1"))
        wait_for(lambda: samples(scrape(port)).get(("timemon_allan_deviation", key)),
                 timeout=60)
        yield port
    finally:
        stop(proc)


def run(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "status", *args], capture_output=True, text=True, timeout=30)


def test_json_agrees_with_the_metrics(agent: int, timemon_exe: str) -> None:
    result = run(timemon_exe, "--url", f"http://127.0.0.1:{agent}", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    rows = {r["source"]: r for r in doc["sources"]}
    assert set(rows) == {"lab-chronyd", "gone", "kernel"}
    metrics = samples(scrape(agent))
    lab = rows["lab-chronyd"]
    assert lab["up"] and lab["state"] == "up" and lab["kind"] == "ntp"
    assert abs(lab["offset_seconds"]) < 1e-3 and lab["delay_seconds"] > 0
    assert math.isfinite(lab["jitter_seconds"])
    assert lab["allan_deviation_tau_seconds"] == 1
    key = (("kind", "ntp"), ("source", "lab-chronyd"))
    # The numbers are the agent's: same ADEV as /metrics (statistics fold in batches).
    adev = metrics[("timemon_allan_deviation", (*key, ("tau", "1")))]
    assert lab["allan_deviation"] == pytest.approx(adev, rel=0.5)
    assert lab["frequency_offset_ratio"] is not None
    assert 0 <= lab["last_sample_age_seconds"] < 5
    assert lab["mask_violations"] in ([], ["G.8272-PRTC-A:mtie"], ["G.8272-PRTC-A:tdev"],
                                      ["G.8272-PRTC-A:mtie", "G.8272-PRTC-A:tdev"])
    gone = rows["gone"]
    assert gone["up"] is False and gone["state"] == "down"
    assert gone["offset_seconds"] is None and gone["last_error"].startswith("timeout")
    kernel = rows["kernel"]
    assert kernel["offset_seconds"] is None  # adjtimex's offset is a correction, not shown
    assert kernel["state"] == ("sync" if metrics[("timemon_kernel_sync_status", ())] == 1
                               else "unsync")


def test_table(agent: int, timemon_exe: str) -> None:
    result = run(timemon_exe, "--url", f"http://127.0.0.1:{agent}/")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("source "))
    assert lines[header + 1].startswith("=====")
    rows = {line.split()[0]: line for line in lines[header + 2:]}
    assert set(rows) == {"lab-chronyd", "gone", "kernel"}
    lab = rows["lab-chronyd"].split()
    assert lab[1] == "ntp" and lab[2] == "up"
    assert lab[3][0] in "+-" and lab[3].endswith("s")  # a signed offset with its unit
    assert "(1)" in rows["lab-chronyd"]  # ADEV at tau 1 s
    assert "down" in rows["gone"] and "E timeout" in rows["gone"]
    assert "falseticker" in result.stdout  # the legend, as chronyc sources -v


def test_no_agent_exits_1_with_one_line(timemon_exe: str) -> None:
    result = run(timemon_exe, "--url", f"http://127.0.0.1:{free_tcp_port()}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach the agent" in result.stderr and "Traceback" not in result.stderr


def test_not_an_agent_exits_1(tmp_path: Path, timemon_exe: str) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run(timemon_exe, "--url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "not answer like a timemon agent" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_url_is_a_usage_error(timemon_exe: str) -> None:
    result = run(timemon_exe, "--url", "127.0.0.1:9642")
    assert result.returncode == 2 and "http://" in result.stderr
