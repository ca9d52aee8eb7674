#!/usr/bin/env python3
"""NTP measurement precision on loopback against chronyd: timemon, ntplib, chronyd.

On loopback there is one clock, so the true offset is exactly zero and every
measured offset is that client's error.  Each client makes N requests to the
same chronyd server, one client after the other, spaced 1/64 s apart (chronyd's
own fastest poll, ``minpoll -6``).  chronyd runs twice, in its default basic
mode (the anchor of the ratio column) and with ``xleave``; timemon in its
default (interleaved where the server offers it) and with ``--basic``.
Prints a table; asserts nothing.

    .venv/bin/python bench/ntp_precision.py [--count 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ntplib
from timemon.probes.ntp import query

from timemon.daemons import Chronyd

SPACING = 1 / 64


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_timemon(port: int, count: int, interleaved: bool = True) -> list[float]:
    async def go() -> list[float]:
        offsets: list[float] = []
        state = None
        while len(offsets) < count:
            started = time.monotonic()
            m = await query(("127.0.0.1", port), socket.AF_INET, 1.0, interleave=state)
            state = m.next_interleave if interleaved else None
            if not m.duplicate:
                offsets.append(m.offset)
            await asyncio.sleep(max(0.0, SPACING - (time.monotonic() - started)))
        return offsets

    return asyncio.run(go())


def run_ntplib(port: int, count: int) -> list[float]:
    client = ntplib.NTPClient()
    offsets = []
    for _ in range(count):
        started = time.monotonic()
        # ntplib's offset is RFC 5905's theta (server − local): negate to local − server.
        offsets.append(-client.request("127.0.0.1", version=4, port=port, timeout=1).offset)
        time.sleep(max(0.0, SPACING - (time.monotonic() - started)))
    return offsets


def run_chronyd_client(port: int, count: int, workdir: Path, options: str = "") -> list[float]:
    client = Chronyd(workdir / f"client{options}", client_of=port, poll=-6,
                     server_options=options)
    try:
        deadline = time.monotonic() + count * SPACING * 3 + 30
        while len(client.raw_offsets()) < count + 5 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        client.stop()
    # The first few measurements precede chronyd's own start-up settling: drop them.
    return client.raw_offsets()[5:count + 5]


def summary(offsets: list[float]) -> tuple[float, float, float]:
    magnitudes = sorted(abs(x) for x in offsets)
    p99 = magnitudes[min(len(magnitudes) - 1, int(0.99 * len(magnitudes)))]
    return statistics.median(magnitudes), statistics.pstdev(offsets), p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timemon-bench-") as tmp:
        server = Chronyd(Path(tmp) / "server", port=free_port())
        try:
            server.wait_serving()
            results = {
                "chronyd (client)": run_chronyd_client(server.port, args.count, Path(tmp)),
                "chronyd xleave": run_chronyd_client(server.port, args.count, Path(tmp),
                                                     "xleave"),
                "timemon": run_timemon(server.port, args.count),
                "timemon --basic": run_timemon(server.port, args.count, interleaved=False),
                "ntplib": run_ntplib(server.port, args.count),
            }
        finally:
            server.stop()
    anchor_sd = summary(results["chronyd (client)"])[1]
    print(f"NTP offset error on loopback vs chronyd 127.0.0.1 (true offset 0), "
          f"{args.count} requests each, 1/64 s apart")
    print(f"{'client':18} {'n':>5} {'median |off| µs':>16} {'sd µs':>9} {'p99 |off| µs':>13} "
          f"{'sd / chronyd':>13}")
    for name, offsets in results.items():
        med, sd, p99 = summary(offsets)
        print(f"{name:18} {len(offsets):5d} {med * 1e6:16.3f} {sd * 1e6:9.3f} {p99 * 1e6:13.3f} "
              f"{sd / anchor_sd:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
