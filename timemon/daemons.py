"""Real daemons started for tests and benchmarks: chronyd on a loopback port.

chronyd runs with ``-x`` (never touches the system clock), ``-u root`` (may write
in /tmp) and everything in its own directory, so several can run side by side
(DESIGN.md, "Real parts").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from timemon.probes.ntp_packet import NTP_PACKET_SIZE, build_request, new_nonce

SBIN_PATHS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in sbin, where Debian puts chronyd and ptp4l."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_PATHS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


class Chronyd:
    """chronyd in its own directory: a ``local stratum 1`` server, or a client of one.

    As a server it listens on ``port``; ``client_of`` makes it a client polling that
    port every ``2**poll`` seconds and logging raw measurements (``measurements.log``).
    """

    def __init__(self, workdir: Path, port: int = 0, client_of: int | None = None,
                 poll: int = -6, extra: str = "", server_options: str = "") -> None:
        binary = which("chronyd")
        if binary is None:
            raise FileNotFoundError("chronyd is not installed (Debian package chrony)")
        self.dir = workdir
        self.port = port
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.socket_path = self.dir / "chronyd.sock"
        lines = [
            "cmdport 0",
            f"bindcmdaddress {self.socket_path}",
            f"pidfile {self.dir / 'chronyd.pid'}",
            f"driftfile {self.dir / 'drift'}",
        ]
        if client_of is None:
            lines += ["local stratum 1", "allow 127.0.0.1", f"port {port}"]
        else:
            lines += [f"server 127.0.0.1 port {client_of} minpoll {poll} maxpoll {poll} "
                      f"{server_options}",
                      "port 0", f"logdir {self.dir}", "log rawmeasurements"]
        conf = self.dir / "chrony.conf"
        conf.write_text("\n".join(lines) + "\n" + extra)
        self._log = open(self.dir / "chronyd.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, "-u", "root", "-x", "-d", "-f", str(conf)],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout: float = 10.0) -> None:
        """Until the server answers with stratum 1 and a leap indicator other than 3."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("chronyd exited: "
                                       + (self.dir / "chronyd.log").read_text())
                s.sendto(build_request(new_nonce()), ("127.0.0.1", self.port))
                try:
                    data = s.recv(512)
                except TimeoutError:
                    continue
                if len(data) >= NTP_PACKET_SIZE and data[0] >> 6 != 3 and data[1] == 1:
                    return
                time.sleep(0.2)
        raise RuntimeError("chronyd did not start serving time")

    def raw_offsets(self) -> list[float]:
        """Offsets (local − server, seconds) from a client's measurements.log.

        chronyd logs RFC 5905's theta (server − local), so each is negated.
        """
        path = self.dir / "measurements.log"
        if not path.exists():
            return []
        offsets = []
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 12 and fields[0][:2] == "20":
                offsets.append(-float(fields[11]))
        return offsets

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
