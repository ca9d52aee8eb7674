"""Real receiver captures played through a pty, read by ``timemon probe gnss`` as a serial
device, and compared epoch by epoch with what gpsd reported for the same capture (.chk)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from gnss_support import PtyPlayer, chk_epochs, epoch_chunks, iso_ns, wait_opened

GAP = 0.005  # seconds between epochs on the pty: ~200x faster than the receivers sent them
_RUNS: dict[str, tuple[subprocess.CompletedProcess, float]] = {}


def run_probe(timemon_exe: str, name: str, extra: tuple[str, ...] = ("--json",),
              chunks: list[bytes] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    chunks = epoch_chunks(name) if chunks is None else chunks
    player = PtyPlayer()
    duration = len(chunks) * (GAP + 0.005) + 1.2
    proc = subprocess.Popen([timemon_exe, "probe", "gnss", player.device, "--duration",
                             f"{duration:.2f}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_opened(proc.pid, player.device)
        started = time.monotonic()
        player.play(chunks, GAP)
        out, err = proc.communicate(timeout=duration + 20)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        player.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), elapsed


def cached_run(timemon_exe: str, name: str) -> tuple[subprocess.CompletedProcess, float]:
    """One playback per capture serves every test that reads it."""
    if name not in _RUNS:
        _RUNS[name] = run_probe(timemon_exe, name)
    return _RUNS[name]


@pytest.mark.parametrize("name", [
    "ublox-zed-f9t-ubx_nmea_l5.log",
    "u-blox-m8t-time.log",
    "ublox8-uniqid-monhw.log",
    "quectel-L70.log",
    "garmin15x.log",
    "nmea-fuzzy-cases.log",
])
def test_every_chk_epoch_matches_gpsd(timemon_exe: str, name: str) -> None:
    result, _elapsed = cached_run(timemon_exe, name)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    epochs = [json.loads(line) for line in result.stdout.splitlines()]
    with_utc = [e for e in epochs if e["utc_ns"] is not None]
    expected = chk_epochs(name)
    assert expected
    for when, tpv in expected.items():
        want = iso_ns(when)
        near = [e for e in with_utc if abs(e["utc_ns"] - want) <= 10_000_000]
        assert len(near) == 1, f"{name} {when}: {len(near)} epochs within 10 ms"
        assert near[0]["fix_mode"] == tpv["mode"], f"{name} {when}"
        if "status" in tpv:
            assert near[0]["fix_status"] == tpv["status"], f"{name} {when}"
        if "leapseconds" in tpv and near[0]["leap_seconds"] is not None:
            assert near[0]["leap_seconds"] == tpv["leapseconds"]
    # Every epoch the probe printed is a receiver epoch: no duplicates, in order.
    times = [e["utc_ns"] for e in with_utc]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_time_only_fix_is_mode_3_status_7_with_receiver_health(timemon_exe: str) -> None:
    result, _ = cached_run(timemon_exe, "u-blox-m8t-time.log")
    epochs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(epochs) >= 150
    last = epochs[-1]
    assert (last["fix_mode"], last["fix_status"]) == (3, 7)
    assert last["utc_from"] == "NAV-TIMEUTC"
    assert last["leap_seconds"] == 18
    assert 0 < last["time_accuracy_seconds"] < 1e-5  # NAV-TIMEUTC tAcc, about 1 us here
    assert last["qerr_seconds"] is not None and abs(last["qerr_seconds"]) < 1e-8
    assert last["survey_in_active"] is False
    assert last["tdop"] is not None and last["satellites_used"] >= 4
    assert 20 < last["cn0_mean_dbhz"] < 50


def test_serial_offset_follows_the_playback(timemon_exe: str) -> None:
    """Epochs 1 s apart in receiver time arrive ~GAP apart: each serial offset
    (arrival − UTC) is ~(GAP − 1 s) below the previous one.  Checks the arrival stamps."""
    result, _ = cached_run(timemon_exe, "quectel-L70.log")
    epochs = [json.loads(line) for line in result.stdout.splitlines()]
    offsets = [e["offset_seconds"] for e in epochs if e.get("offset_seconds") is not None]
    assert len(offsets) >= 15
    steps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    mean_step = sum(steps) / len(steps)
    assert -1.0 < mean_step < -1.0 + GAP + 0.1, steps
    assert all(e["quality"] == "serial" for e in epochs if "quality" in e)


def test_tsip_gives_unsupported_stream(timemon_exe: str) -> None:
    result, _ = run_probe(timemon_exe, "trimble-res720.log")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported_stream" in lines[0], result.stderr


def test_human_output(timemon_exe: str) -> None:
    result, _ = run_probe(timemon_exe, "garmin15x.log", extra=())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    assert lines[0].startswith("2022-10-18T11:32:58Z, mode 3, status 2, used 8")


def test_missing_device_exits_1(timemon_exe: str, tmp_path) -> None:
    result = subprocess.run([timemon_exe, "probe", "gnss", str(tmp_path / "ttyNONE"),
                             "--duration", "1"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "no_device" not in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_gpsd_url_exits_2(timemon_exe: str) -> None:
    result = subprocess.run([timemon_exe, "probe", "gnss", "gpsd://[::1", "--duration", "1"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
