"""Pulse-per-second: reading pulses, and pairing each with the UTC second it marks.

Two sources of pulse timestamps:

* RFC 2783 PPS API as Linux implements it (``<linux/pps.h>``): ``/dev/ppsN``
  and the ``PPS_FETCH`` ioctl, which returns the kernel's timestamp of the last
  assert/clear edge with their sequence numbers.  The structures are declared
  here by their layout (``struct pps_ktime``, ``pps_kinfo``, ``pps_fdata``).
* The DCD line of a serial port: ``TIOCMIWAIT`` blocks until a modem line
  changes (tty_ioctl(4)); the time is read right after it returns, so this is a
  user-space timestamp with the scheduling latency of a thread wake-up.

Both block, so they run in a thread, never on the event loop.

A pulse carries no date: it is paired with a UTC second using the receiver's
serial time.  With ``serial_offset`` = sentence arrival − reported UTC − fixed
delay (a coarse estimate of local − UTC, good to a fraction of a second), the
pulse at local time ``p`` marks the UTC second nearest to ``p − serial_offset``
(the method of chrony's PPS refclock locked to an NMEA source).  That survives
a missed pulse (the next one pairs on its own), and refuses a pulse before the
first fix and a pairing made ambiguous by a late sentence.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import os
import statistics
import struct
import termios
import time
from collections import deque
from dataclasses import dataclass

NS = 1_000_000_000


class PpsError(Exception):
    """A PPS read failed; ``reason`` is the ``timemon_probe_errors_total`` label."""

    reason = "pps_error"


class NoPpsDevice(PpsError):
    """No pulse source: no /dev/pps*, or the port's driver has no TIOCMIWAIT (a pty)."""

    reason = "no_pps_device"


class PpsTimeout(PpsError):
    reason = "pps_timeout"


# -- <linux/pps.h> ---------------------------------------------------------------------

PPS_TIME_INVALID = 1 << 0  # pps_ktime.flags: the timeout is not set, wait forever
PPS_CAPTUREASSERT = 0x01


class PpsKTime(ctypes.Structure):
    """struct pps_ktime { __s64 sec; __s32 nsec; __u32 flags; }  (16 bytes)"""

    _fields_ = [("sec", ctypes.c_int64), ("nsec", ctypes.c_int32), ("flags", ctypes.c_uint32)]


class PpsKInfo(ctypes.Structure):
    """struct pps_kinfo: sequences, assert/clear times, current mode (48 bytes on x86-64:
    44 of fields, padded to the 8-byte alignment of the __s64 inside pps_ktime)."""

    _fields_ = [("assert_sequence", ctypes.c_uint32), ("clear_sequence", ctypes.c_uint32),
                ("assert_tu", PpsKTime), ("clear_tu", PpsKTime), ("current_mode", ctypes.c_int)]


class PpsFData(ctypes.Structure):
    """struct pps_fdata { struct pps_kinfo info; struct pps_ktime timeout; }"""

    _fields_ = [("info", PpsKInfo), ("timeout", PpsKTime)]


def _ioc(direction: int, type_char: str, number: int, size: int) -> int:
    """Linux asm-generic/ioctl.h _IOC: dir(2 bits) size(14) type(8) nr(8)."""
    return (direction << 30) | (size << 16) | (ord(type_char) << 8) | number


_IOC_WRITE, _IOC_READ = 1, 2
# linux/pps.h declares PPS_FETCH with a *pointer* type, so its size field is the size
# of a pointer, not of struct pps_fdata: _IOWR('p', 0xa4, struct pps_fdata *).
PPS_FETCH = _ioc(_IOC_READ | _IOC_WRITE, "p", 0xA4, ctypes.sizeof(ctypes.c_void_p))
PPS_GETCAP = _ioc(_IOC_READ, "p", 0xA3, ctypes.sizeof(ctypes.c_void_p))


@dataclass(frozen=True, slots=True)
class PpsEdge:
    sequence: int
    t_ns: int  # CLOCK_REALTIME of the edge


def fdata_for_timeout(timeout: float | None) -> PpsFData:
    data = PpsFData()
    if timeout is None:
        data.timeout.flags = PPS_TIME_INVALID
    else:
        data.timeout.sec = int(timeout)
        data.timeout.nsec = int((timeout - int(timeout)) * NS)
    return data


def edge_from_fdata(data: PpsFData) -> PpsEdge:
    info = data.info
    return PpsEdge(int(info.assert_sequence), int(info.assert_tu.sec) * NS + int(info.assert_tu.nsec))


def find_pps_devices() -> list[str]:
    return sorted(glob.glob("/dev/pps[0-9]*"))


def open_pps(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError as exc:
        have = ", ".join(find_pps_devices()) or "none"
        raise NoPpsDevice(f"no PPS device {path} (present: {have})") from exc
    except OSError as exc:
        raise PpsError(f"{path}: {exc.strerror}") from exc


def fetch(fd: int, timeout: float | None = 1.5) -> PpsEdge:
    """PPS_FETCH: the last assert edge, waiting up to ``timeout`` for a new one (blocks)."""
    data = fdata_for_timeout(timeout)
    try:
        fcntl.ioctl(fd, PPS_FETCH, data, True)
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            raise PpsTimeout("no pulse within the timeout") from exc
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise NoPpsDevice("not an RFC 2783 PPS device") from exc
        raise PpsError(f"PPS_FETCH: {exc.strerror}") from exc
    return edge_from_fdata(data)


def wait_dcd(fd: int) -> PpsEdge:
    """Block until DCD rises (TIOCMIWAIT on TIOCM_CD); a user-space timestamp."""
    sequence = 0
    while True:
        try:
            fcntl.ioctl(fd, termios.TIOCMIWAIT, termios.TIOCM_CD)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EIO):
                raise NoPpsDevice(
                    f"the serial driver has no TIOCMIWAIT ({exc.strerror}): no DCD PPS") from exc
            raise PpsError(f"TIOCMIWAIT: {exc.strerror}") from exc
        t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
        raw = fcntl.ioctl(fd, termios.TIOCMGET, struct.pack("i", 0))
        if struct.unpack("i", raw)[0] & termios.TIOCM_CD:  # the assert (rising) edge
            sequence += 1
            return PpsEdge(sequence, t_ns)


# -- pairing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PpsMatch:
    pulse_ns: int  # local time of the pulse
    utc_second_ns: int  # the UTC second it marks
    offset_ns: int  # local − UTC (DESIGN.md sign)


class PpsPairer:
    """Pair pulses with UTC seconds from the serial epochs (see the module doc).

    ``add_epoch`` takes each epoch with a valid fix; ``add_pulse`` returns the
    pairing or raises ``PpsUnpaired`` with the reason.
    """

    def __init__(self, fixed_delay: float = 0.0, window: int = 8,
                 max_jitter: float = 0.2, max_age: float = 3.0) -> None:
        self.fixed_delay_ns = int(fixed_delay * NS)
        self.max_jitter_ns = int(max_jitter * NS)
        self.max_age_ns = int(max_age * NS)
        self._epochs: deque[tuple[int, int, int]] = deque(maxlen=window)  # arrival, utc, off
        self.late_sentences = 0

    def add_epoch(self, arrival_ns: int, utc_ns: int) -> bool:
        """Record a fix; False when its sentence was late against the recent ones."""
        offset = arrival_ns - utc_ns - self.fixed_delay_ns
        if len(self._epochs) >= 3:
            median = statistics.median(e[2] for e in self._epochs)
            if abs(offset - median) > self.max_jitter_ns:
                self.late_sentences += 1
                return False
        self._epochs.append((arrival_ns, utc_ns, offset))
        return True

    def serial_offset_ns(self) -> int | None:
        if not self._epochs:
            return None
        return int(statistics.median(e[2] for e in self._epochs))

    def add_pulse(self, pulse_ns: int) -> PpsMatch:
        if not self._epochs:
            raise PpsUnpaired("no_fix", "pulse before the first fix: no UTC second to pair with")
        last_arrival, last_utc, _off = self._epochs[-1]
        if pulse_ns - last_arrival > self.max_age_ns:
            raise PpsUnpaired("no_fix", "no fix in the last seconds: pulse not paired")
        serial = self.serial_offset_ns()
        assert serial is not None
        estimate = pulse_ns - serial  # the pulse's UTC time, to within the serial error
        second = (estimate + NS // 2) // NS * NS
        if abs(estimate - second) > NS // 2 - self.max_jitter_ns:
            # Sentence timing too close to half a second: the second is ambiguous.
            raise PpsUnpaired("pps_ambiguous",
                              f"serial offset leaves the pulse {abs(estimate - second) / 1e9:.3f}"
                              " s from a whole second: which second is ambiguous")
        if abs(second - last_utc) > 2 * NS:
            raise PpsUnpaired("pps_ambiguous", "pulse is not near the receiver's reported time")
        return PpsMatch(pulse_ns, second, pulse_ns - second)


class PpsUnpaired(PpsError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
