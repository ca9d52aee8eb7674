"""Config loading: the documented shape, and every mistake refused with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from timemon.address import HostPort
from timemon.cli import main
from timemon.config import (
    ConfigError,
    default_config,
    load_config,
    parse_config,
    parse_duration,
    servers_from_ntp_config,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_full_example_parses() -> None:
    config = parse_config("""
[agent]
listen = "127.0.0.1:9999"
store = "/tmp/x.db"
retention = "7d"

[[source]]
name = "lab-gm"
kind = "ntp"
address = "192.0.2.10:123"
interval = "16s"

[[source]]
name = "v6"
kind = "ntp"
address = "[2001:db8::1]:1123"
interval = 2
lab = true

[[source]]
kind = "kernel"
""")
    assert config.listen == ("127.0.0.1", 9999)
    assert config.retention == 7 * 86400
    ntp1, ntp2, kernel = config.sources
    assert ntp1.options["address"] == HostPort("192.0.2.10", 123) and ntp1.interval == 16
    assert ntp2.options["address"] == HostPort("2001:db8::1", 1123) and ntp2.options["lab"]
    assert kernel.name == "kernel" and kernel.kind == "kernel"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(example: Path) -> None:
    load_config(str(example))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(16, 16.0), (0.5, 0.5), ("16s", 16.0), ("2m", 120.0), ("500ms", 0.5), ("1h", 3600.0),
     ("30d", 2592000.0), (" 64 ", 64.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["16x", "", "-1s", 0, -3, True, [1], "1.2.3s"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[source]]\nname = "a"\nkind = "ntp"\naddres = "x"\n', "x.toml:4: source #1 ('a'): unknown key 'addres'"),
        ('[[source]]\nname = "a"\nkind = "gps"\n', "x.toml:3: source #1 ('a'): kind 'gps'"),
        ('[[source]]\nname = "a"\nkind = "ntp"\n', "missing 'address'"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "[::1"\n', "x.toml:4"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "h:99999"\n', "outside 1-65535"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "h"\ninterval = "1s"\n',
         "x.toml:5: source #1 ('a'): interval 1 s is below the floor of 16 s"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "h"\nlab = true\ninterval = 0.5\n',
         "below the floor of 1 s"),
        ('[[source]]\nname = "a"\nkind = "ntp"\naddress = "h"\nlab = "yes"\n', "'lab' must be"),
        ('[[source]]\nname = "a"\nkind = "kernel"\n[[source]]\nname = "a"\nkind = "kernel"\n',
         "x.toml:5: source #2: name 'a' is used twice"),
        ('[agent]\nlisten = "0.0.0.0"\nport = 1\n', "x.toml:3: [agent]: unknown key 'port'"),
        ('[agent]\nlisten = "0.0.0.0:http"\n', "x.toml:2: [agent] listen"),
        ('[agent]\nretention = "forever"\n', "[agent] retention"),
        ("[agents]\n", "unknown table 'agents'"),
        ("source = 3\n", "array of tables"),
        ("a = \n", "not valid TOML"),
    ],
)
def test_config_errors_name_file_line_and_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_servers_from_chrony_conf_skip_pools() -> None:
    text = """
# comment
pool 2.debian.pool.ntp.org iburst
server ntp1.example.org iburst
server 192.0.2.7 port 1123 minpoll 4
server [2001:db8::5]
peer 192.0.2.9
"""
    assert servers_from_ntp_config(text) == [
        HostPort("ntp1.example.org", 123), HostPort("192.0.2.7", 1123),
        HostPort("2001:db8::5", 123)]


def test_default_config_without_any_ntp_config(tmp_path: Path) -> None:
    config = default_config(system_configs=(str(tmp_path / "missing.conf"),))
    assert [s.kind for s in config.sources] == ["kernel"]


def test_default_config_reads_server_lines(tmp_path: Path) -> None:
    conf = tmp_path / "chrony.conf"
    conf.write_text("server 192.0.2.1 iburst\npool pool.example.org\n")
    config = default_config(system_configs=(str(conf),))
    assert [(s.name, s.kind, s.interval) for s in config.sources] == [
        ("kernel", "kernel", 10.0), ("192.0.2.1", "ntp", 64.0)]


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[source]]\nname = "a"\nkind = "ntp"\naddress = "192.0.2.1"\n')
    result = CliRunner().invoke(main, ["check-config", str(good)])
    assert result.exit_code == 0 and "1 sources" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[source]]\nname = "a"\nkind = "ntp"\n')
    result = CliRunner().invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "cannot read" in result.output
