"""``timemon analyze --mask``: violating points marked in the table and the JSON,
the mask drawn on the plot, and an unknown name refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from timemon.analysis.masks import get_mask

from timemon.cli import main


@pytest.fixture
def phase_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    # 1 s phase with 2 ns white noise plus a slow 1 µs wander: inside PRTC-A's
    # 25-100 ns MTIE at short tau, outside it at long tau.
    n = 4096
    x = rng.normal(0, 2e-9, n) + 1e-6 * np.sin(np.arange(n) / 600.0)
    path = tmp_path / "phase.txt"
    np.savetxt(path, x)
    return path


def test_json_marks_points_against_the_mask(phase_file: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(phase_file), "--stat", "mtie", "--stat",
                                       "tdev", "--mask", "G.8272-PRTC-A", "--json"])
    assert result.exit_code == 0, result.output
    mask = get_mask("G.8272-PRTC-A")
    verdicts = set()
    for line in result.output.splitlines():
        obj = json.loads(line)
        assert obj["mask"] == "G.8272-PRTC-A"
        for point in obj["points"]:
            limit = mask.limit_seconds(obj["stat"], point["tau"])
            assert point["mask_limit"] == pytest.approx(limit)
            assert point["violation"] == (point["dev"] > limit)
            verdicts.add(point["violation"])
    assert verdicts == {True, False}  # both sides of the mask are exercised


def test_table_and_plot(phase_file: Path, tmp_path: Path) -> None:
    plot = tmp_path / "sigma-tau.png"
    result = CliRunner().invoke(main, ["analyze", str(phase_file), "--stat", "mtie", "--stat",
                                       "oadev", "--mask", "G.8272-PRTC-A", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "mask G.8272-PRTC-A" in result.output and "VIOLATION" in result.output
    assert " ok" in result.output
    oadev_part = result.output.split("(oadev)")[1]
    assert "VIOLATION" not in oadev_part  # ADEV has no mask
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_mask_is_a_usage_error(phase_file: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(phase_file), "--mask", "G.999"])
    assert result.exit_code == 2
    assert "G.8272-PRTC-A" in result.output  # the valid names are listed
