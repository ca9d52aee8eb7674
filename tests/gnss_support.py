"""Helpers for the GNSS tests: captures, their gpsd reports, and a pty that plays them."""

from __future__ import annotations

import json
import os
import threading
import time
import tty
from datetime import datetime
from pathlib import Path

from timemon.probes.gnss_stream import Frame, split_bytes

DATA = Path(__file__).parent / "data" / "gnss"

# The first message of each epoch burst, as each receiver was configured to send them:
# the player cuts the capture there, so the pty delivers one epoch per write.
CYCLE_START = {
    "garmin15x.log": {"GPRMC"},
    "nmea-fuzzy-cases.log": {"GPGGA", "GNGGA"},
    "quectel-L70.log": {"GPRMC"},
    "u-blox-m8t-time.log": {"TIM-TP"},
    "ublox-zed-f9t-ubx_nmea_l5.log": {"NAV-PVT"},
    "ublox8-uniqid-monhw.log": {"NAV-SOL"},
}


def capture_body(name: str) -> bytes:
    """The byte stream of a capture: everything after its leading block of '#' lines only."""
    data = (DATA / name).read_bytes()
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            return b""
        pos = end + 1
    return data[pos:]


def epoch_chunks(name: str) -> list[bytes]:
    """The capture cut before each cycle-start frame (junk between frames stays in place)."""
    body = capture_body(name)
    starts = CYCLE_START.get(name)
    if not starts:
        return [body[i:i + 512] for i in range(0, len(body), 512)]
    cuts = [0]
    pos = 0
    for event in split_bytes(body):
        if isinstance(event, Frame):
            at = body.find(event.raw, pos)
            assert at >= 0
            pos = at + len(event.raw)
            if event.identity in starts and at > 0:
                cuts.append(at)
    cuts.append(len(body))
    return [body[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def chk_epochs(name: str) -> dict[str, dict]:
    """time -> the last TPV gpsd printed for it (its final word on the epoch)."""
    last: dict[str, dict] = {}
    for line in (DATA / f"{name}.chk").read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if report.get("class") == "TPV" and "time" in report:
            last[report["time"]] = report
    return last


def last_tpv_per_time(lines: list[str]) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for line in lines:
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("class") == "TPV" and "time" in report:
            last[report["time"]] = report
    return last


def iso_ns(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


class PtyPlayer:
    """A pseudo-terminal whose slave a probe opens as its serial device.

    ``link`` (optional) is a stable path to the slave, like /dev/serial/by-id: the
    "unplug" closes the pty and removes the link, "replug" makes a new pty there.
    """

    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.path = ""
        self._thread: threading.Thread | None = None
        self.written = 0
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)  # a reader that stopped must not hang the player
        self._stop = threading.Event()
        tty.setraw(self.slave)  # no echo, no CR->NL, no ^C: bytes pass as they are
        self.path = os.ttyname(self.slave)
        if self.link is not None:
            tmp = self.link.with_suffix(".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            tmp.replace(self.link)

    def unplug(self) -> None:
        self._stop.set()
        self.wait()
        if self.link is not None:
            self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1

    @property
    def device(self) -> str:
        return str(self.link) if self.link is not None else self.path

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                if self._stop.wait(0.002):
                    raise OSError("player stopped") from None
                continue
            view = view[n:]
            self.written += n

    def play(self, chunks: list[bytes], gap: float = 0.02, background: bool = True) -> None:
        def run() -> None:
            for chunk in chunks:
                try:
                    self.write(chunk)
                except OSError:
                    return
                if self._stop.wait(gap):
                    return

        if background:
            self._thread = threading.Thread(target=run, daemon=True)
            self._thread.start()
        else:
            run()

    def wait(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()


def wait_opened(pid: int, device: str, timeout: float = 10.0) -> None:
    """Until process ``pid`` holds ``device`` open (so nothing written is flushed away)."""
    target = os.path.realpath(device)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        time.sleep(0.05)  # pyserial configures the port right after open
                        return
                except OSError:
                    continue
        except FileNotFoundError:
            raise AssertionError(f"process {pid} exited before opening {device}") from None
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not open {device}")
