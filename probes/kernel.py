"""The kernel clock discipline, read with ``adjtimex(2)`` (modes = 0: read-only, unprivileged).

The kernel is not a reference: its ``offset`` and ``freq`` are corrections the
kernel PLL is still applying (reference − local), not a measured offset, so
this probe exports only ``timemon_kernel_*`` families with their kernel
meaning, like node_exporter's timex collector.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from timemon.families import Families
from timemon.source import Source, sleep_until_monotonic

# <linux/timex.h> status bits
STA_PLL = 0x0001
STA_PPSFREQ = 0x0002
STA_PPSTIME = 0x0004
STA_FLL = 0x0008
STA_INS = 0x0010
STA_DEL = 0x0020
STA_UNSYNC = 0x0040
STA_FREQHOLD = 0x0080
STA_PPSSIGNAL = 0x0100
STA_PPSJITTER = 0x0200
STA_PPSWANDER = 0x0400
STA_PPSERROR = 0x0800
STA_CLOCKERR = 0x1000
STA_NANO = 0x2000
STA_MODE = 0x4000
STA_CLK = 0x8000

CLOCK_STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT",
                5: "TIME_ERROR"}

# Frequency fields are in ppm with a 16-bit binary fraction ("scaled ppm").
SCALED_PPM = 65536.0 * 1e6
DEFAULT_INTERVAL = 10.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (glibc, 64-bit Linux)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.adjtimex.argtypes = [ctypes.POINTER(_Timex)]
_libc.adjtimex.restype = ctypes.c_int


class KernelClockError(OSError):
    pass


@dataclass(frozen=True)
class KernelClock:
    """adjtimex state in base units.  ``offset`` and ``frequency`` are corrections."""

    clock_state: int
    sync_status: int  # 1 when STA_UNSYNC is clear
    status: int
    offset_seconds: float
    frequency_adjustment_ratio: float
    maxerror_seconds: float
    estimated_error_seconds: float
    time_constant: int
    precision_seconds: float
    tolerance_ratio: float
    tick_seconds: float
    tai_offset_seconds: int
    pps_frequency_ratio: float
    pps_jitter_seconds: float
    pps_shift_seconds: int
    pps_stability_ratio: float
    pps_jitter_count: int
    pps_calibration_count: int
    pps_error_count: int
    pps_stability_exceeded_count: int

    @property
    def clock_state_name(self) -> str:
        return CLOCK_STATES.get(self.clock_state, str(self.clock_state))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["clock_state_name"] = self.clock_state_name
        data["status_flags"] = status_flag_names(self.status)
        return data


def status_flag_names(status: int) -> list[str]:
    names = {v: k for k, v in globals().items() if k.startswith("STA_") and isinstance(v, int)}
    return [names[bit] for bit in sorted(names) if status & bit]


def read_kernel_clock() -> KernelClock:
    tx = _Timex()
    tx.modes = 0
    state = _libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        err = ctypes.get_errno()
        raise KernelClockError(err, f"adjtimex: {os.strerror(err)}")
    # offset is in ns with STA_NANO, else us; jitter likewise (see adjtimex(2)).
    sub_second = 1e-9 if tx.status & STA_NANO else 1e-6
    return KernelClock(
        clock_state=state,
        sync_status=0 if tx.status & STA_UNSYNC else 1,
        status=tx.status,
        offset_seconds=tx.offset * sub_second,
        frequency_adjustment_ratio=tx.freq / SCALED_PPM,
        maxerror_seconds=tx.maxerror * 1e-6,
        estimated_error_seconds=tx.esterror * 1e-6,
        time_constant=tx.constant,
        precision_seconds=tx.precision * 1e-6,
        tolerance_ratio=tx.tolerance / SCALED_PPM,
        tick_seconds=tx.tick * 1e-6,
        tai_offset_seconds=tx.tai,
        pps_frequency_ratio=tx.ppsfreq / SCALED_PPM,
        pps_jitter_seconds=tx.jitter * sub_second,
        pps_shift_seconds=1 << tx.shift if tx.shift >= 0 else 0,
        pps_stability_ratio=tx.stabil / SCALED_PPM,
        pps_jitter_count=tx.jitcnt,
        pps_calibration_count=tx.calcnt,
        pps_error_count=tx.errcnt,
        pps_stability_exceeded_count=tx.stbcnt,
    )


_GAUGES = (
    ("sync_status", "1 when the kernel clock is synchronised (STA_UNSYNC clear)."),
    ("clock_state", "adjtimex return value: 0 TIME_OK, 1 TIME_INS, 2 TIME_DEL, 3 TIME_OOP, "
                    "4 TIME_WAIT, 5 TIME_ERROR."),
    ("status", "adjtimex status bit field (STA_* in <linux/timex.h>; README lists them)."),
    ("offset_seconds", "Time correction the kernel PLL still has to apply (reference - local); "
                       "not a measured offset."),
    ("frequency_adjustment_ratio", "Frequency correction applied by the kernel (ratio)."),
    ("maxerror_seconds", "Maximum error the kernel assumes for the clock."),
    ("estimated_error_seconds", "Estimated error of the clock."),
    ("time_constant", "PLL time constant."),
    ("precision_seconds", "Clock precision."),
    ("tolerance_ratio", "Maximum frequency error of the clock (ratio)."),
    ("tick_seconds", "Length of a clock tick."),
    ("tai_offset_seconds", "TAI - UTC as the kernel knows it (0: unknown)."),
    ("pps_frequency_ratio", "PPS frequency correction (ratio)."),
    ("pps_jitter_seconds", "PPS jitter."),
    ("pps_shift_seconds", "PPS calibration interval."),
    ("pps_stability_ratio", "PPS stability (ratio)."),
)
_COUNTERS = (
    ("pps_jitter_count", "timemon_kernel_pps_jitter_limit_exceeded", "PPS jitter limit exceeded."),
    ("pps_calibration_count", "timemon_kernel_pps_calibrations", "PPS calibration intervals."),
    ("pps_error_count", "timemon_kernel_pps_calibration_errors", "PPS calibration errors."),
    ("pps_stability_exceeded_count", "timemon_kernel_pps_stability_limit_exceeded",
     "PPS stability limit exceeded."),
)


class KernelSource(Source):
    kind = "kernel"
    is_reference = False

    def __init__(self, name: str = "kernel", interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(name, interval)
        self.clock: KernelClock | None = None
        self.read_errors = 0

    async def run(self) -> None:
        while True:
            started = time.monotonic_ns()
            self.poll_once()
            await sleep_until_monotonic(started + int(self.interval * 1e9))

    def poll_once(self) -> None:
        try:
            self.clock = read_kernel_clock()  # one syscall: microseconds, fine on the loop
        except KernelClockError as exc:
            self.read_errors += 1
            self.count_error("adjtimex", str(exc))
            self.set_up(False)
            return
        self.last_sample_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
        self.set_up(True)

    def collect_specific(self, out: Families) -> None:
        out.counter("timemon_kernel_read_errors", "adjtimex calls that failed.", (), (),
                    self.read_errors)
        clock = self.clock
        if clock is None:
            return
        for field, doc in _GAUGES:
            out.gauge(f"timemon_kernel_{field}", doc, (), (), float(getattr(clock, field)))
        for field, name, doc in _COUNTERS:
            out.counter(name, doc, (), (), float(getattr(clock, field)))

    def status(self) -> dict[str, Any]:
        status = super().status()
        if self.clock is not None:
            status.update(self.clock.as_json())
        return status
