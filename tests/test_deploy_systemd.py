"""The hardened unit: systemd-analyze verify is clean, the exposure score is 2.5 or lower,
and the settings the probes depend on are there (DESIGN.md: adjtimex is in @clock)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import find_binary

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "timemon.service"
DROPINS = sorted((ROOT / "systemd" / "timemon.service.d").glob("*.conf"))
MAX_EXPOSURE = 2.5


def unit_copy(tmp_path: Path, timemon_exe: str, *dropins: Path) -> Path:
    """The unit with ExecStart on this venv's timemon (verify wants the binary to exist),
    and the drop-ins' [Service] lines appended, as systemd would merge them."""
    text = UNIT.read_text().replace("/usr/local/bin/timemon", timemon_exe)
    for dropin in dropins:
        extra = dropin.read_text().split("[Service]\n", 1)[1]
        text = text.replace("\n[Install]", "\n" + extra + "\n[Install]")
    path = tmp_path / "timemon.service"
    path.write_text(text)
    return path


def exposure(unit: Path) -> tuple[float, str]:
    analyze = find_binary("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), result.stdout


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_verify_is_clean(tmp_path: Path, timemon_exe: str) -> None:
    analyze = find_binary("systemd-analyze")
    result = subprocess.run([analyze, "verify", "--man=no", str(unit_copy(tmp_path, timemon_exe))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path, timemon_exe: str) -> None:
    """The check above can fail: a missing ExecStart binary is reported."""
    analyze = find_binary("systemd-analyze")
    broken = tmp_path / "timemon.service"
    broken.write_text(UNIT.read_text().replace("/usr/local/bin/timemon",
                                               str(tmp_path / "missing")))
    result = subprocess.run([analyze, "verify", "--man=no", str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 or result.stderr.strip()


def test_exposure_is_low(tmp_path: Path, timemon_exe: str) -> None:
    score, report = exposure(unit_copy(tmp_path, timemon_exe))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= MAX_EXPOSURE, report


@pytest.mark.parametrize("dropin", DROPINS, ids=lambda p: p.name)
def test_dropins_verify_and_stay_sandboxed(tmp_path: Path, timemon_exe: str,
                                           dropin: Path) -> None:
    analyze = find_binary("systemd-analyze")
    unit = unit_copy(tmp_path, timemon_exe, dropin)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    score, report = exposure(unit)
    print(f"exposure with {dropin.name}: {score}")
    assert score <= 4.0, report  # root with no capability is still well inside "OK"


def test_the_settings_the_probes_need() -> None:
    s = settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert re.fullmatch(r"\d+s", s["WatchdogSec"][0])
    assert s["User"] == ["timemon"] or s.get("DynamicUser") == ["yes"]
    assert s["StateDirectory"] == ["timemon"]
    assert s["ConfigurationDirectory"] == ["timemon"]
    assert "dialout" in s["SupplementaryGroups"][0].split()
    # adjtimex(2) is in @clock: ProtectClock=yes would deny it to the kernel source.
    assert s.get("ProtectClock", ["no"]) == ["no"]
    assert "adjtimex" in " ".join(s["SystemCallFilter"])
    assert s["CapabilityBoundingSet"] == [""]  # no CAP_SYS_TIME: it can only read the clock
    assert {"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw", "char-pps r"} <= set(
        s["DeviceAllow"])
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0]


def test_sysusers_creates_the_user(tmp_path: Path) -> None:
    sysusers = find_binary("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = subprocess.run([sysusers, f"--root={tmp_path}",
                             str(ROOT / "systemd" / "timemon.sysusers")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert re.search(r"^timemon:x:\d+:\d+:[^:]*:/var/lib/timemon:/usr/sbin/nologin$",
                     passwd, re.M), passwd
