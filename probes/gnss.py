"""The GNSS source: a receiver on a serial port, or gpsd, as the agent schedules it.

Serial: the port is opened with pyserial (8N1, raw) and read non-blocking from
the event loop (``loop.add_reader``); each read is stamped with CLOCK_REALTIME
as soon as it returns, and the splitter gives each frame the stamp of the read
that delivered its first byte.  When the device disappears (USB unplug: EIO or
ENODEV on read) the source goes down and the port is reopened every second
until it returns.

gpsd (``device = "gpsd://HOST:PORT"``): an asyncio TCP connection, WATCH with
json and pps, reconnected (every second, then backing off to 8 s) when gpsd
restarts.

Offset (local − UTC): with PPS, pulse time − the UTC second it marks
(quality "pps"); without, the arrival of the epoch's first frame − the UTC the
receiver reports − the configured ``fixed_delay`` (quality "serial", good to
the receiver's output latency: tens to hundreds of milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from timemon.probes.gnss_decode import (
    ANTENNA_STATES,
    Epoch,
    EpochDecoder,
    GnssDecodeError,
    wanted,
)
from timemon.probes.gnss_gpsd import (
    MAX_LINE,
    WATCH,
    GpsdEpochs,
    GpsdProtocolError,
    TimeOffset,
    parse_report,
)
from timemon.probes.gnss_pps import (
    NoPpsDevice,
    PpsEdge,
    PpsError,
    PpsPairer,
    PpsUnpaired,
    fetch,
    open_pps,
    wait_dcd,
)
from timemon.probes.gnss_stream import (
    GnssStreamError,
    StreamSplitter,
    UnsupportedStreamError,
)

from timemon.address import AddressError, HostPort, parse_host_port
from timemon.families import SOURCE_LABELS, Families
from timemon.source import ProbeError, Sample, SampleSink, Source

log = logging.getLogger("timemon.probes.gnss")

GPSD_SCHEME = "gpsd://"
GPSD_PORT = 2947
DEFAULT_BAUD = 9600
IDLE_FLUSH = 0.25  # s of silence that ends an epoch (receivers send each epoch as a burst)
STALE_AFTER = 5.0  # s without an epoch: the source is down (reason "timeout")
REOPEN_EVERY = 1.0
GPSD_BACKOFF_MAX = 8.0
PPS_FRESH = 2.5  # s: PPS counts as the active timing source for this long after a pulse
JITTER_WINDOW = 16


class GnssError(ProbeError):
    """Opening or reading the receiver failed."""


def parse_gpsd_url(device: str) -> HostPort | None:
    """``gpsd://HOST:PORT`` to a HostPort, None for a serial device path."""
    if not device.startswith(GPSD_SCHEME):
        return None
    rest = device[len(GPSD_SCHEME):].rstrip("/")
    try:
        return parse_host_port(rest or "127.0.0.1", GPSD_PORT)
    except AddressError as exc:
        raise GnssError("bad_device", f"{device}: {exc}") from exc


def open_serial(path: str, baud: int) -> Any:
    """Open the port 8N1 raw, non-blocking; GnssError when it is not there."""
    import serial  # pyserial

    try:
        port = serial.Serial(path, baudrate=baud, timeout=0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        missing = isinstance(exc, FileNotFoundError) or "No such file" in str(exc)
        raise GnssError("no_device" if missing else "open_failed", f"{path}: {exc}") from exc
    os.set_blocking(port.fileno(), False)
    return port


EpochCallback = Callable[[Epoch], None]
ErrorCallback = Callable[[str, str], None]


class GnssSource(Source):
    kind = "gnss"

    def __init__(
        self,
        name: str,
        device: str,
        baud: int = DEFAULT_BAUD,
        fixed_delay: float = 0.0,
        interval: float = 1.0,
        pps: str = "",
        sink: SampleSink | None = None,
        on_epoch: EpochCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(name, interval, sink)
        self.device = device
        self.baud = baud
        self.fixed_delay = fixed_delay
        self.gpsd = parse_gpsd_url(device)
        self.pps_config = pps
        self.on_epoch = on_epoch
        self.on_error = on_error
        self.epoch: Epoch | None = None
        self.epochs_total = 0
        self.quality = "serial"
        self.pps_state = "not configured" if not pps else "starting"
        self.pps_pulses_total = 0
        self.pps_last_ns: int | None = None  # monotonic
        self.stream_supported = True
        self.pairer = PpsPairer(fixed_delay=fixed_delay)
        self._offsets: deque[float] = deque(maxlen=JITTER_WINDOW)
        self._last_epoch_mono = 0
        self._port: Any = None
        self._pps_stop = threading.Event()
        self._pps_thread: threading.Thread | None = None
        self._gpsd_writer: asyncio.StreamWriter | None = None
        self.gpsd_version: str | None = None

    # -- shared epoch handling -------------------------------------------------------

    def _error(self, reason: str, detail: str) -> None:
        self.count_error(reason, detail)
        if self.on_error is not None:
            self.on_error(reason, detail)

    def _pps_active(self) -> bool:
        return (self.pps_last_ns is not None
                and time.monotonic_ns() - self.pps_last_ns < PPS_FRESH * 1e9)

    def _handle_epoch(self, epoch: Epoch) -> None:
        self.epoch = epoch
        self.epochs_total += 1
        self._last_epoch_mono = time.monotonic_ns()
        if self.on_epoch is not None:
            self.on_epoch(epoch)
        if epoch.utc_ns is None or epoch.arrival_ns is None or epoch.fix_mode < 2:
            self._error("no_fix", f"epoch without a valid fix (mode {epoch.fix_mode})")
            self.set_up(False)
            return
        in_time = self.pairer.add_epoch(epoch.arrival_ns, epoch.utc_ns)
        if not in_time:
            self._error("late_sentence", "epoch arrived late against the recent ones")
        if self.gpsd is not None or self._pps_active():
            # gpsd's TOFF/PPS give the offsets; with PPS the pulses do.
            self.set_up(True)
            return
        offset = (epoch.arrival_ns - epoch.utc_ns) / 1e9 - self.fixed_delay
        self._accept(epoch.arrival_ns, offset, "serial")

    def _accept(self, t_ns: int, offset: float, quality: str) -> None:
        self.quality = quality
        self.accept(Sample(t_ns, offset))
        self.offset = offset
        # The receiver's own accuracy: tAcc plus the pulse's quantization error (qErr,
        # not applied).  A serial offset carries the output latency, which tAcc does not
        # cover: no interval, no bound then (README: Error bounds).
        epoch = self.epoch
        tacc = epoch.time_accuracy_seconds if epoch is not None else None
        if quality == "pps" and tacc is not None:
            qerr = epoch.qerr_seconds if epoch is not None and epoch.qerr_seconds else 0.0
            self.root_distance = tacc + abs(qerr)
            self.error_bound = abs(offset) + self.root_distance
        else:
            self.root_distance = self.error_bound = None
        self._offsets.append(offset)
        if len(self._offsets) >= 2:
            mean = sum(self._offsets) / len(self._offsets)
            self.jitter = math.sqrt(sum((o - mean) ** 2 for o in self._offsets)
                                    / (len(self._offsets) - 1))
        self.set_up(True)

    def offset_labels(self) -> dict[str, str]:
        return {"quality": self.quality}

    # -- run ---------------------------------------------------------------------------

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._watchdog())
        try:
            if self.gpsd is not None:
                await self._run_gpsd(self.gpsd)
            else:
                self._start_pps()
                await self._run_serial()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self.close()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            silent = (time.monotonic_ns() - self._last_epoch_mono) / 1e9
            if self.up and silent > max(STALE_AFTER, 3 * self.interval):
                self._error("timeout", f"no epoch for {silent:.1f} s")
                self.set_up(False)

    async def close(self) -> None:
        self._pps_stop.set()
        self._close_port()
        writer, self._gpsd_writer = self._gpsd_writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- serial --------------------------------------------------------------------------

    def open_port(self) -> Any:
        """Open the serial device now (the CLI calls it to fail fast)."""
        self._port = open_serial(self.device, self.baud)
        return self._port

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(port.fileno())
            with contextlib.suppress(Exception):
                port.close()

    async def _run_serial(self) -> None:
        loop = asyncio.get_running_loop()
        lost_logged = False
        while True:
            if self._port is None:
                try:
                    self.open_port()
                except GnssError as exc:
                    if not lost_logged:  # count an outage once, not every retry
                        self._error(exc.reason, str(exc))
                        lost_logged = True
                    self.set_up(False)
                    await asyncio.sleep(REOPEN_EVERY)
                    continue
            lost_logged = False
            await self._read_port(loop, self._port)
            self._close_port()
            self.set_up(False)
            await asyncio.sleep(REOPEN_EVERY)

    async def _read_port(self, loop: asyncio.AbstractEventLoop, port: Any) -> None:
        """Read until the device goes away; returns then (the caller reopens).

        The event loop only reads bytes and stamps them.  Splitting and decoding
        (pyubx2 takes milliseconds for a NAV-SAT, and an epoch of GSV sentences more)
        run in order on a worker thread of this source, whose results come back to
        the loop with ``call_soon_threadsafe``.
        """
        fd = port.fileno()
        splitter = StreamSplitter(decode=wanted)
        decoder = EpochDecoder()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gnss-{self.name}")
        gone: asyncio.Future[str] = loop.create_future()
        idle: asyncio.TimerHandle | None = None

        def decode(data: bytes, t_ns: int) -> None:  # worker thread
            results: list[tuple[str, Any]] = []
            for event in splitter.feed(data, t_ns):
                if isinstance(event, GnssStreamError):
                    results.append(("stream_error", event))
                    continue
                results.append(("frame", None))
                try:
                    results.extend(("epoch", epoch) for epoch in decoder.feed(event))
                except GnssDecodeError as exc:
                    results.append(("decode_error", exc))
            if results:
                loop.call_soon_threadsafe(self._apply, results)

        def flush_decoder() -> None:  # worker thread
            epoch = decoder.flush()
            if epoch is not None:
                loop.call_soon_threadsafe(self._apply, [("epoch", epoch)])

        def flush() -> None:
            worker.submit(flush_decoder)

        def on_readable() -> None:
            nonlocal idle
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:  # EIO / ENODEV: unplugged
                if not gone.done():
                    gone.set_result(f"{self.device}: {exc.strerror or exc}")
                return
            t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if not data:
                if not gone.done():
                    gone.set_result(f"{self.device}: end of file")
                return
            worker.submit(decode, data, t_ns)
            if idle is not None:
                idle.cancel()
            idle = loop.call_later(IDLE_FLUSH, flush)

        loop.add_reader(fd, on_readable)
        try:
            detail = await gone
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            if idle is not None:
                idle.cancel()
            worker.submit(flush_decoder)
            # Let queued decoding finish without blocking the loop.
            await loop.run_in_executor(None, worker.shutdown, True)
        self._error("device_lost", detail)

    def _apply(self, results: list[tuple[str, Any]]) -> None:
        """On the loop: what the worker decoded, in order."""
        started = time.monotonic_ns()
        for kind, item in results:
            if kind == "stream_error":
                if isinstance(item, UnsupportedStreamError):
                    self.stream_supported = False
                    self.set_up(False)
                self._error(item.reason, str(item))
            elif kind == "frame":
                self.stream_supported = True
            elif kind == "decode_error":
                self._error(item.reason, str(item))
            else:
                self._handle_epoch(item)
        self.probe_duration = (time.monotonic_ns() - started) / 1e9

    # -- PPS -----------------------------------------------------------------------------

    def _start_pps(self) -> None:
        if not self.pps_config or self._pps_thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._pps_stop.clear()
        self._pps_thread = threading.Thread(target=self._pps_loop, args=(loop,),
                                            name=f"pps:{self.name}", daemon=True)
        self._pps_thread.start()

    def _pps_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: wait for pulses (blocking ioctls) and hand them to the loop."""
        fd: int | None = None
        try:
            while not self._pps_stop.is_set():
                try:
                    if self.pps_config == "dcd":
                        port = self._port
                        if port is None:
                            self._pps_stop.wait(REOPEN_EVERY)
                            continue
                        edge = wait_dcd(port.fileno())
                    else:
                        if fd is None:
                            fd = open_pps(self.pps_config)
                        edge = fetch(fd, 1.5)
                except NoPpsDevice as exc:
                    loop.call_soon_threadsafe(self._pps_failed, exc, True)
                    self._pps_stop.wait(10.0)  # a PPS device rarely appears later; look again slowly
                    continue
                except PpsError as exc:
                    loop.call_soon_threadsafe(self._pps_failed, exc, False)
                    continue
                loop.call_soon_threadsafe(self._on_pulse, edge)
        finally:
            if fd is not None:
                os.close(fd)

    def _pps_failed(self, exc: PpsError, no_device: bool) -> None:
        if no_device:
            self.pps_state = f"no PPS device: {exc}"
        self._error(exc.reason, str(exc))

    _last_edge_seq: int | None = None

    def _on_pulse(self, edge: PpsEdge) -> None:
        if edge.sequence == self._last_edge_seq:
            return  # PPS_FETCH returned the same edge again
        self._last_edge_seq = edge.sequence
        self.pps_pulses_total += 1
        try:
            match = self.pairer.add_pulse(edge.t_ns)
        except PpsUnpaired as exc:
            self._error(exc.reason, str(exc))
            return
        self.pps_state = "ok"
        self.pps_last_ns = time.monotonic_ns()
        self._accept(match.pulse_ns, match.offset_ns / 1e9, "pps")

    # -- gpsd ----------------------------------------------------------------------------

    async def _run_gpsd(self, address: HostPort) -> None:
        backoff = REOPEN_EVERY
        while True:
            try:
                async with asyncio.timeout(5.0):  # not wait_for: see timemon.probes
                    reader, writer = await asyncio.open_connection(
                        address.host, address.port, limit=MAX_LINE)
            except (TimeoutError, OSError) as exc:
                self._error("gpsd_unreachable", f"{address}: {exc}")
                self.set_up(False)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, GPSD_BACKOFF_MAX)
                continue
            backoff = REOPEN_EVERY
            self._gpsd_writer = writer
            try:
                writer.write(WATCH)
                await writer.drain()
                await self._read_gpsd(reader)
                detail = "gpsd closed the connection"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                detail = f"gpsd connection: {exc}"
            finally:
                self._gpsd_writer = None
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            self._error("gpsd_disconnected", detail)
            self.set_up(False)
            await asyncio.sleep(backoff)

    async def _read_gpsd(self, reader: asyncio.StreamReader) -> None:
        epochs = GpsdEpochs()
        while True:
            try:
                async with asyncio.timeout(IDLE_FLUSH):  # not wait_for: see timemon.probes
                    line = await reader.readline()
            except TimeoutError:
                epoch = epochs.flush()
                if epoch is not None:
                    self._handle_epoch(epoch)
                continue
            if not line:
                epoch = epochs.flush()
                if epoch is not None:
                    self._handle_epoch(epoch)
                return
            t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            try:
                done, offset = epochs.feed(parse_report(line), t_ns)
            except GpsdProtocolError as exc:
                self._error(exc.reason, str(exc))
                continue
            self.gpsd_version = epochs.version
            for epoch in done:
                self._handle_epoch(epoch)
            if offset is not None:
                self._on_gpsd_offset(offset)

    def _on_gpsd_offset(self, toff: TimeOffset) -> None:
        if toff.quality == "serial" and self._pps_active():
            return  # PPS is the better one while pulses arrive
        if toff.quality == "pps":
            self.pps_last_ns = time.monotonic_ns()
            self.pps_pulses_total += 1
            self.pps_state = "ok"
        self._accept(toff.clock_ns, toff.offset_ns / 1e9, toff.quality)

    # -- exporter ------------------------------------------------------------------------

    def collect_specific(self, out: Families) -> None:
        lv = self.label_values
        out.gauge("timemon_gnss_stream_supported",
                  "0 when 4 KiB arrived without one valid NMEA sentence or UBX frame.",
                  SOURCE_LABELS, lv, 1.0 if self.stream_supported else 0.0)
        out.counter("timemon_gnss_epochs", "Navigation epochs decoded.", SOURCE_LABELS, lv,
                    self.epochs_total)
        if self.pps_config or self.gpsd is not None:
            out.gauge("timemon_gnss_pps_active",
                      "1 while pulses are paired with UTC seconds (offset quality pps).",
                      SOURCE_LABELS, lv, 1.0 if self._pps_active() else 0.0)
            out.counter("timemon_gnss_pps_pulses", "PPS pulses received.", SOURCE_LABELS, lv,
                        self.pps_pulses_total)
        epoch = self.epoch
        if epoch is None:
            return
        gauges: tuple[tuple[str, Any, str], ...] = (
            ("fix_mode", epoch.fix_mode,
             "Fix mode as gpsd numbers it: 0 unknown, 1 no fix, 2 2D, 3 3D (time-only is 3)."),
            ("fix_status", epoch.fix_status,
             "Fix status as gpsd numbers it: 0 unknown, 1 GPS, 2 DGPS, 3 RTK fixed, 4 RTK "
             "float, 5 dead reckoning, 6 GNSS+DR, 7 time only (surveyed), 8 simulated, 9 P(Y)."),
            ("satellites_used", epoch.satellites_used, "Satellites used in the solution."),
            ("satellites_visible", epoch.satellites_visible, "Satellites tracked or in view."),
            ("pdop", epoch.pdop, "Position dilution of precision."),
            ("tdop", epoch.tdop, "Time dilution of precision."),
            ("time_accuracy_seconds", epoch.time_accuracy_seconds,
             "Receiver's time accuracy estimate (UBX NAV-TIMEUTC/NAV-PVT/NAV-CLOCK tAcc)."),
            ("qerr_seconds", epoch.qerr_seconds,
             "Quantization error of the next time pulse (UBX TIM-TP qErr)."),
            ("antenna_status", epoch.antenna_status,
             "Antenna supervisor (UBX MON-HW/MON-RF): 0 init, 1 don't know, 2 ok, 3 short, "
             "4 open."),
            ("jamming_indicator", epoch.jamming_indicator,
             "CW jamming indicator, 0 (none) to 255 (strong) (UBX MON-HW/MON-RF jamInd)."),
            ("jamming_state", epoch.jamming_state,
             "Jamming state: 0 unknown, 1 ok, 2 warning, 3 critical (UBX MON-HW/MON-RF)."),
            ("leap_seconds", epoch.leap_seconds, "GPS - UTC leap seconds as the receiver says."),
            ("survey_in_active", _flag(epoch.survey_in_active),
             "1 while a survey-in runs (UBX TIM-SVIN/NAV-SVIN)."),
            ("survey_in_valid", _flag(epoch.survey_in_valid),
             "1 when the survey-in position is valid."),
            ("survey_in_mean_accuracy_meters", epoch.survey_in_mean_accuracy_meters,
             "Survey-in mean position accuracy (metres)."),
            ("survey_in_duration_seconds", epoch.survey_in_duration_seconds,
             "Survey-in duration so far."),
            ("cn0_mean_dbhz", epoch.cn0_mean_dbhz,
             "Mean carrier-to-noise density of the satellites used (dB-Hz)."),
            ("clock_bias_seconds", epoch.clock_bias_seconds,
             "Receiver clock bias (UBX NAV-CLOCK clkB)."),
            ("clock_drift_ratio", epoch.clock_drift_ratio,
             "Receiver clock drift (UBX NAV-CLOCK clkD), dimensionless."),
        )
        for name, value, doc in gauges:
            if value is not None:
                out.gauge(f"timemon_gnss_{name}", doc, SOURCE_LABELS, lv, float(value))

    def reference_info(self) -> dict[str, str]:
        return {"receiver": self.device}

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update({"device": self.device, "quality": self.quality, "pps": self.pps_state,
                       "stream_supported": self.stream_supported,
                       "epochs_total": self.epochs_total})
        if self.epoch is not None:
            status["epoch"] = self.epoch.as_json()
            if self.epoch.antenna_status is not None:
                status["antenna"] = ANTENNA_STATES.get(self.epoch.antenna_status, "unknown")
        return status


def _flag(value: bool | None) -> float | None:
    return None if value is None else (1.0 if value else 0.0)
