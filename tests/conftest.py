"""Shared fixtures: real daemons started on loopback, the project's NTP responder.

A test that needs a binary (chronyd, promtool, ...) skips when it is missing on
a developer's machine, but fails in CI: ``.ci/run`` and ``make test`` set
TIMEMON_REQUIRE_BINARIES=1.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from timemon.daemons import Chronyd, which
from timemon.simulator import ResponderThread

REQUIRE_BINARIES = os.environ.get("TIMEMON_REQUIRE_BINARIES") == "1"


def find_binary(name: str) -> str:
    """Path of a required binary; fails in CI, skips elsewhere, when it is missing."""
    path = which(name)
    if path:
        return path
    message = f"{name} is not installed (make test installs it with apt-get)"
    if REQUIRE_BINARIES:
        pytest.fail(message)
    pytest.skip(message)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chronyd_server() -> Iterator[Chronyd]:
    with tempfile.TemporaryDirectory(prefix="timemon-chronyd-") as tmp:
        find_binary("chronyd")
        server = Chronyd(Path(tmp) / "server", free_udp_port())
        try:
            server.wait_serving()
            yield server
        finally:
            server.stop()


@pytest.fixture
def responders() -> Iterator[ResponderThread]:
    thread = ResponderThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def timemon_exe() -> str:
    exe = Path(sys.executable).parent / "timemon"
    assert exe.exists(), "the timemon console script is not installed in this venv"
    return str(exe)
