"""`timemon analyze` through click's CliRunner on the command object."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from timemon.analyze_cli import analyze

NBS14 = [892, 809, 823, 798, 671, 644, 883, 903, 677]


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(analyze, list(args))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10^5 points, two columns (time, phase) at 0.5 s spacing, CSV with a header comment."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal(100_000)) * 1e-9
    t = 1000.0 + 0.5 * np.arange(x.size)
    p = tmp_path_factory.mktemp("data") / "phase.csv"
    np.savetxt(p, np.column_stack([t, x]), delimiter=",", header="time,phase", comments="# ")
    return p


def test_table_for_nbs14(tmp_path: Path) -> None:
    f = tmp_path / "nbs14.txt"
    f.write_text("# NBS14\n" + "\n".join(map(str, NBS14)) + "\n")
    r = run(str(f), "--data-type", "freq", "--stat", "adev", "--stat", "mdev", "--taus", "1,2")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert any("AF" in ln and "alpha" in ln and "min sigma" in ln and "max sigma" in ln
               for ln in lines)
    rows = [ln.split() for ln in lines if ln.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "1", "2"]
    assert float(rows[1][5]) == pytest.approx(115.8082, rel=1e-4)  # ADEV AF 2
    assert float(rows[3][5]) == pytest.approx(74.78849, rel=1e-4)  # MDEV AF 2


def test_json_and_inferred_rate(big_file: Path) -> None:
    r = run(str(big_file), "--json", "--stat", "oadev", "--stat", "mtie")
    assert r.exit_code == 0, r.output
    objs = [json.loads(ln) for ln in r.output.splitlines()]
    assert [o["stat"] for o in objs] == ["oadev", "mtie"]
    o = objs[0]
    assert o["rate"] == 2.0 and o["data_type"] == "phase"
    pt = o["points"][0]
    assert set(pt) == {"tau", "m", "n", "dev", "ci_low", "ci_high", "alpha"}
    assert pt["tau"] == 0.5 and pt["m"] == 1 and pt["ci_low"] < pt["dev"] < pt["ci_high"]
    assert objs[1]["points"][0]["ci_low"] is None  # no chi-squared model for MTIE


def test_plot_on_1e5_points(big_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sigma.png"
    r = run(str(big_file), "--stat", "oadev", "--stat", "mdev", "--stat", "hdev", "--plot", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "d.txt"
    f.write_text("\n".join(map(str, NBS14)))
    real_import = builtins.__import__

    def fake_import(name: str, *a, **k):  # type: ignore[no-untyped-def]
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    r = run(str(f), "--plot", str(tmp_path / "x.png"))
    assert r.exit_code == 2
    assert "pip install 'timemon[plot]'" in r.output


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("1.0\n2.0\n# note\nabc\n", 4),  # text in the number column
        ("0,1e-9\n1,2e-9\n2,x\n", 3),
        ("# only a comment\n", 1),  # empty
        ("", 1),
        ("\n# c\n5.0\n", 3),  # one value
        ("1 2\n3\n", 2),  # ragged columns
    ],
)
def test_bad_files_exit_2_with_line_number(tmp_path: Path, content: str, line: int) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(content)
    r = run(str(f))
    assert r.exit_code == 2
    assert isinstance(r.exception, SystemExit)  # not a traceback
    msg = r.output.strip().splitlines()
    assert len(msg) == 1
    assert f"{f}:{line}:" in msg[0]


def test_missing_file_and_bad_taus(tmp_path: Path) -> None:
    r = run(str(tmp_path / "nope.txt"))
    assert r.exit_code == 2 and "nope.txt" in r.output
    f = tmp_path / "d.txt"
    f.write_text("\n".join(map(str, NBS14)))
    r = run(str(f), "--taus", "1,zz")
    assert r.exit_code == 2 and "--taus" in r.output
