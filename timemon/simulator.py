"""A small NTP server whose clock is chosen: true + offset + drift·t + noise.

Real servers cannot give a known answer; this one can, so tests check that a
probe measures a known offset (local − reference = −offset), frequency and
noise, and that misbehaving replies (wrong origin, Kiss-o'-Death, LI=3,
truncated, wrong port, garbage) never enter a series.

Run one from the shell: ``python -m timemon.simulator --port 12300 --offset 0.25``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from timemon.probes import ntp_packet as pkt
from timemon.probes.timestamping import receive

# What the responder does with each request.
MODES = (
    "normal",
    "wrong_origin",  # origin field does not echo the request
    "kod_rate", "kod_deny", "kod_rstr",  # stratum 0 with a kiss code
    "kod_rate_bad_origin",  # a forged KoD: must be ignored
    "unsync_leap",  # LI = 3
    "stratum16",
    "zero_transmit",
    "truncated",  # 30 bytes of a reply
    "wrong_port",  # the reply comes from another port
    "garbage",  # random bytes
    "wrong_mode",  # mode 3 instead of 4
    "silent",  # no reply at all
)


@dataclass
class ResponderClock:
    """The responder's clock: true time plus offset + drift·(t − t0) + Gaussian noise."""

    offset: float = 0.0  # seconds
    drift: float = 0.0  # fractional frequency, s/s
    noise: float = 0.0  # standard deviation, seconds
    seed: int = 1
    t0_ns: int = field(default_factory=lambda: time.clock_gettime_ns(time.CLOCK_REALTIME))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def error_ns(self, true_ns: int) -> int:
        """Responder time − true time at ``true_ns``, the same value for T2 and T3 of a request
        but for the noise draw, which is one per request (white phase noise)."""
        return round((self.offset + self.drift * (true_ns - self.t0_ns) / 1e9) * 1e9)

    def draw_noise_ns(self) -> int:
        return round(self._rng.gauss(0.0, self.noise) * 1e9) if self.noise else 0


class NtpResponder:
    """One UDP NTP server socket on the running event loop.

    ``mode`` can be changed at any time; with ``also_genuine`` a misbehaving
    reply is followed by the genuine one (a spoof racing the real server).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 clock: ResponderClock | None = None, mode: str = "normal",
                 also_genuine: bool = False, stratum: int = 1, refid: bytes = b"SIM\0") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.clock = clock or ResponderClock()
        self.mode = mode
        self.also_genuine = also_genuine
        self.stratum = stratum
        self.refid = refid
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS: kernel RX stamps
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.other = socket.socket(family, socket.SOCK_DGRAM)  # for "wrong_port"
        self.other.bind((host, 0))
        self.requests = 0
        self.request_times_ns: list[int] = []
        self._rng = random.Random(self.clock.seed + 1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.other.close()

    def _on_readable(self) -> None:
        while True:
            try:
                got = receive(self.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._answer(got.data, got.address, got.rx_ns)

    def _reply(self, request_tx: int, rx_true_ns: int, *, leap: int = 0, stratum: int | None = None,
               refid: bytes | None = None, origin: int | None = None, mode: int = pkt.MODE_SERVER,
               zero_transmit: bool = False) -> bytes:
        noise = self.clock.draw_noise_ns()
        t2 = rx_true_ns + self.clock.error_ns(rx_true_ns) + noise
        tx_true = time.clock_gettime_ns(time.CLOCK_REALTIME)
        t3 = tx_true + self.clock.error_ns(tx_true) + noise
        first = (leap << 6) | (4 << 3) | mode
        return pkt.NTP_PACKET.pack(
            first, self.stratum if stratum is None else stratum, 4, -20, 0, 0,
            self.refid if refid is None else refid, pkt.unix_ns_to_ntp(t2 - 1_000_000_000),
            request_tx if origin is None else origin, pkt.unix_ns_to_ntp(t2),
            0 if zero_transmit else pkt.unix_ns_to_ntp(t3))

    def _answer(self, data: bytes, address: tuple, rx_ns: int) -> None:
        if len(data) < pkt.NTP_PACKET_SIZE:
            return
        self.requests += 1
        self.request_times_ns.append(time.monotonic_ns())
        request_tx = pkt.NTP_PACKET.unpack_from(data)[10]
        mode = self.mode
        bad: bytes | None = None
        sender = self.sock
        if mode == "silent":
            return
        if mode == "normal":
            bad = None
        elif mode == "wrong_origin":
            # A forged reply: wrong origin, and a clock 1000 s off, which must never show.
            bad = self._reply(request_tx ^ 0xFFFF, rx_ns + 1_000_000_000_000)
        elif mode in ("kod_rate", "kod_deny", "kod_rstr"):
            code = mode[4:].upper().encode()
            bad = self._reply(request_tx, rx_ns, stratum=0, refid=code, leap=3)
        elif mode == "kod_rate_bad_origin":
            bad = self._reply(request_tx, rx_ns, stratum=0, refid=b"RATE", leap=3,
                              origin=request_tx ^ 1)
        elif mode == "unsync_leap":
            bad = self._reply(request_tx, rx_ns, leap=3)
        elif mode == "stratum16":
            bad = self._reply(request_tx, rx_ns, stratum=16)
        elif mode == "zero_transmit":
            bad = self._reply(request_tx, rx_ns, zero_transmit=True)
        elif mode == "truncated":
            bad = self._reply(request_tx, rx_ns)[:30]
        elif mode == "wrong_port":
            bad = self._reply(request_tx, rx_ns + 1_000_000_000_000)
            sender = self.other
        elif mode == "garbage":
            bad = self._rng.randbytes(self._rng.randrange(1, 200))
        elif mode == "wrong_mode":
            bad = self._reply(request_tx, rx_ns, mode=3)
        try:
            if bad is not None:
                sender.sendto(bad, address)
            if bad is None or self.also_genuine:
                self.sock.sendto(self._reply(request_tx, rx_ns), address)
        except OSError:
            pass


class ResponderThread:
    """Responders on an event loop of their own thread, for tests and benchmarks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.responders: list[NtpResponder] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="ntp-responder",
                                        daemon=True)
        self._thread.start()

    def add(self, **kwargs: object) -> NtpResponder:
        async def make() -> NtpResponder:
            responder = NtpResponder(**kwargs)  # type: ignore[arg-type]
            responder.start(self.loop)
            return responder

        responder = asyncio.run_coroutine_threadsafe(make(), self.loop).result(5)
        self.responders.append(responder)
        return responder

    def stop(self) -> None:
        async def close_all() -> None:
            for responder in self.responders:
                responder.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12300)
    parser.add_argument("--offset", type=float, default=0.0, help="seconds")
    parser.add_argument("--drift", type=float, default=0.0, help="fractional frequency")
    parser.add_argument("--noise", type=float, default=0.0, help="white phase noise sd, seconds")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--count", type=int, default=1, help="servers on consecutive ports")
    args = parser.parse_args()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for i in range(args.count):
            NtpResponder(args.host, args.port + i,
                         ResponderClock(args.offset, args.drift, args.noise, seed=i + 1),
                         args.mode).start(loop)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
