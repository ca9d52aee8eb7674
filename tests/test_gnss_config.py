"""The gnss kind in the config: keys, defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from timemon.config import ConfigError, load_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "gnss.toml"


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "timemon.toml"
    path.write_text('[[source]]\nname = "g"\nkind = "gnss"\n' + body)
    return str(path)


def test_example_config_loads() -> None:
    config = load_config(str(EXAMPLE))
    serial, gpsd = config.sources
    mine = {k: serial.options[k] for k in ("device", "baud", "fixed_delay", "pps")}
    assert mine == {"device": "/dev/ttyACM0", "baud": 115200, "fixed_delay": 0.12, "pps": ""}
    assert serial.interval == 1.0
    assert gpsd.options["device"] == "gpsd://127.0.0.1:2947"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'device = "/dev/ttyUSB0"\n'))
    options = config.sources[0].options
    mine = {k: options[k] for k in ("device", "baud", "fixed_delay", "pps")}
    assert mine == {"device": "/dev/ttyUSB0", "baud": 9600, "fixed_delay": 0.0, "pps": ""}


@pytest.mark.parametrize(("body", "expected"), [
    ("", "missing 'device'"),
    ('device = "ttyUSB0"\n', "absolute path"),
    ('device = "/dev/ttyUSB0"\nbaud = 9601\n', "baud must be one of"),
    ('device = "/dev/ttyUSB0"\nfixed_delay = "2s"\n', "less than 1 s"),
    ('device = "/dev/ttyUSB0"\npps = "/dev/ttyS0"\n', "pps must be"),
    ('device = "gpsd://127.0.0.1:2947"\npps = "dcd"\n', "read by gpsd"),
    ('device = "gpsd://[::1"\n', "device:"),
    ('device = "/dev/ttyUSB0"\nbogus = 1\n', "bogus"),
])
def test_refused(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, body))
    assert expected in str(info.value)


def test_builds_a_gnss_source(tmp_path: Path) -> None:
    from timemon.probes.gnss import GnssSource

    from timemon.kinds import KINDS

    config = load_config(write(tmp_path, 'device = "gpsd://127.0.0.1:2947"\n'))
    source = KINDS["gnss"].build(config.sources[0])
    assert isinstance(source, GnssSource) and source.kind == "gnss"
    assert source.gpsd is not None and source.gpsd.port == 2947
