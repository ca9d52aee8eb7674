"""``timemon report`` and ``timemon export`` on a store of known offset and white phase noise."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from timemon.cli import main
from timemon.source import Sample
from timemon.store import SampleStore, _Pending

T0 = 1_800_000_000 * 10**9
N = 4000
OFFSET = 2.5e-6  # local - reference
SIGMA = 1e-7  # white phase noise, s
DELAY = 4e-4
GAPS = range(1000, 1010)  # ten missing samples
START, END = "2027-01-15T07:59:00Z", "2027-01-15T10:00:00Z"  # T0: 08:00:00Z


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "s.db"
    rng = np.random.default_rng(20260131)
    noise = rng.normal(0.0, SIGMA, N)
    jitter = rng.integers(-2_000_000, 2_000_000, N)  # poll times wander by +-2 ms
    st = SampleStore(str(path), retention=1e10, clock=lambda: T0 + N * 10**9)
    st.note("gm", "ntp", "server", "192.0.2.10:123")
    st.note("gm", "ntp", "refid", "GPS")
    for i in range(N):
        if i in GAPS:
            continue
        st._backlog.append(_Pending("gm", "ntp", Sample(T0 + i * 10**9 + int(jitter[i]),
                                                        OFFSET + float(noise[i]), DELAY)))
    st._backlog.extend(st._queue.get_nowait() for _ in range(2))  # the two notes
    st._flush(final=True)
    assert st._db is not None and st.written == N - len(GAPS)
    st._db.close()
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def report(store: Path) -> dict:
    code, out, err = invoke("report", "--store", str(store), "--source", "gm", "--from", START,
                            "--to", END, "--format", "json", "--mask", "G.8272-PRTC-A")
    assert code == 0, err
    return json.loads(out)


def test_report_states_the_known_offset_within_its_uncertainty(report: dict) -> None:
    mean = report["offset_seconds"]["mean"]
    u = report["uncertainty"]
    assert abs(mean - OFFSET) <= u["expanded_seconds"]
    # Type B dominates: (delay/2)/sqrt(3); type A is sigma/sqrt(n) for white noise.
    assert u["u_b_seconds"] == pytest.approx(DELAY / 2 / math.sqrt(3))
    assert u["u_a_seconds"] == pytest.approx(SIGMA / math.sqrt(N - 10), rel=0.1)
    assert abs(report["offset_seconds"]["std"] - SIGMA) < 0.05 * SIGMA
    assert abs(report["frequency_offset"]["ratio"]) < 5 * report["frequency_offset"][
        "standard_error"] + 1e-12
    assert report["reference"] == {"refid": "GPS", "server": "192.0.2.10:123"}


def test_report_coverage_and_gaps(report: dict) -> None:
    s = report["samples"]
    assert s["count"] == N - 10 and s["grid_points"] == N and s["gaps"] == 10
    assert s["gap_runs"] == 1 and s["longest_gap_seconds"] == pytest.approx(10.0, abs=0.01)
    assert s["tau0_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert s["coverage"] == pytest.approx(1 - 10 / N)


def test_report_adev_of_white_phase_noise_within_its_confidence_interval(report: dict) -> None:
    """White PM: sigma_y(tau) = sqrt(3) sigma_x / tau for every averaging factor."""
    pts = report["stability"]["oadev"]
    inside = 0
    for tau in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0):
        p = min(pts, key=lambda q, tau=tau: abs(q["tau"] - tau))
        assert p["tau"] == pytest.approx(tau, rel=1e-3)
        true = math.sqrt(3) * SIGMA / p["tau"]
        inside += p["ci_low"] <= true <= p["ci_high"]  # the 68 % interval
        # ... and always inside twice that width (about 95 %)
        assert 2 * p["ci_low"] - p["dev"] <= true <= 2 * p["ci_high"] - p["dev"], (tau, p, true)
        assert p["alpha"] == 2  # noise identified as white PM
    assert inside >= 4  # 68 % intervals: most, not all, points cover the truth


def test_report_chain_and_mask(report: dict) -> None:
    assert report["chain"]["ok"] and report["chain"]["unverified_tail"] == 0
    assert report["chain"]["head_seq"] == N - 10 and len(report["chain"]["head"]) == 64
    # PRTC-A: MTIE 100 ns at short tau; 100 ns white noise peaks well above it.
    assert report["mask"]["name"] == "G.8272-PRTC-A"
    mtie = next(c for c in report["mask"]["checks"] if c["statistic"] == "mtie")
    assert mtie["points_checked"] > 0 and not report["mask"]["pass"]


@pytest.mark.parametrize("fmt", ["stable32", "csv"])
def test_export_then_analyze_gives_the_reports_adev(store: Path, report: dict, tmp_path: Path,
                                                    fmt: str) -> None:
    out = tmp_path / f"gm.{fmt}"
    code, _, err = invoke("export", "--store", str(store), "--source", "gm", "--from", START,
                          "--to", END, "--format", fmt, "--out", str(out))
    assert code == 0, err
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == N and sum("nan" in ln for ln in lines) == 10
    rate = ["--rate", str(1e9 / round(report["samples"]["tau0_seconds"] * 1e9))]
    code, text, err = invoke("analyze", str(out), "--json", "--stat", "oadev",
                             *(rate if fmt == "stable32" else []))
    assert code == 0, err
    got = json.loads(text)
    want = report["stability"]["oadev"]
    assert len(got["points"]) == len(want)
    for g, w in zip(got["points"], want, strict=True):
        assert g["tau"] == pytest.approx(w["tau"], rel=1e-6)
        assert g["dev"] == pytest.approx(w["dev"], rel=1e-6)


def test_html_report_is_self_contained(store: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.html"
    code, _, err = invoke("report", "--store", str(store), "--source", "gm", "--from", START,
                          "--to", END, "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "data:image/png;base64," in text and "Hash chain intact" in text
    assert "src=\"http" not in text and "<link" not in text


@pytest.mark.parametrize("args", [
    ["report", "--store", "{store}", "--source", "nope"],
    ["report", "--store", "{store}", "--source", "gm", "--mask", "G.999"],
    ["report", "--store", "{store}", "--source", "gm", "--from", "yesterday"],
    ["report", "--store", "{missing}", "--source", "gm"],
    ["export", "--store", "{store}", "--source", "gm", "--from", START, "--to", START],
    ["export", "--store", "{store}", "--source", "gm", "--from", "2020-01-01",
     "--to", "2020-01-02"],
])
def test_cli_errors_exit_2_with_one_line(store: Path, tmp_path: Path, timemon_exe: str,
                                         args: list[str]) -> None:
    argv = [a.format(store=store, missing=tmp_path / "missing.db") for a in args]
    r = subprocess.run([timemon_exe, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"timemon {argv[0]}: ") and r.stderr.count("\n") == 1


def test_grid_follows_a_slipping_schedule_and_drops_duplicates(tmp_path: Path) -> None:
    """Polls every 1.0005 s for an hour (a schedule that slips) with one repeat and one gap."""
    from timemon.chain import open_readonly
    from timemon.export import load_series

    path = tmp_path / "s.db"
    st = SampleStore(str(path), retention=1e10, clock=lambda: T0)
    times = [T0 + i * 1_000_500_000 for i in range(3600) if i not in (100, 101, 102)]
    times.insert(10, times[10] + 1000)  # the same slot twice
    st._backlog.extend(_Pending("gm", "ntp", Sample(t, 1e-6)) for t in times)
    st._flush(final=True)
    assert st._db is not None
    st._db.close()
    db = open_readonly(str(path))
    s = load_series(db, "gm", T0 - 10**9, T0 + 4000 * 10**9)
    db.close()
    assert s.tau0_ns == 1_000_500_000 and s.duplicates == 1
    assert s.grid is not None and s.grid.size == 3600 and s.gaps == 3
    assert np.isnan(s.grid[100:103]).all()
    assert s.grid_t_ns is not None and s.grid_t_ns[101] == T0 + 101 * 1_000_500_000


def test_parse_time() -> None:
    from timemon.export import ExportError, parse_time

    now = T0
    assert parse_time("-1h", now) == now - 3600 * 10**9
    assert parse_time("-30m", now) == now - 1800 * 10**9
    assert parse_time("-2d", now) == now - 2 * 86400 * 10**9
    assert parse_time("now", now) == now
    assert parse_time("2027-01-15T08:00:00Z") == T0
    assert parse_time("2027-01-15T08:00:00") == T0  # naive is UTC
    assert parse_time("2027-01-15T09:00:00+01:00") == T0
    assert parse_time("2027-01-15T08:00:00.25Z") == T0 + 250_000_000
    with pytest.raises(ExportError, match="not a time"):
        parse_time("-1w", now)


def test_html_report_renders_in_chromium_with_its_plot(store: Path, tmp_path: Path) -> None:
    """The HTML as a person sees it: headless Chromium (Debian's package) renders it, and
    the screenshot holds the sigma-tau plot (matplotlib's first line colour, #1f77b4)."""
    from conftest import find_binary
    from PIL import Image

    chromium = find_binary("chromium")
    html = tmp_path / "r.html"
    code, _, err = invoke("report", "--store", str(store), "--source", "gm", "--from", START,
                          "--to", END, "--out", str(html))
    assert code == 0, err
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1200,4000", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    plot_blue = np.abs(pixels - np.array([0x1F, 0x77, 0xB4])).sum(axis=1) < 40
    assert plot_blue.sum() > 200, "no plot line in the rendered report"
    text = (pixels.sum(axis=1) < 200).sum()  # dark pixels: the report's text and tables
    assert text > 5000
