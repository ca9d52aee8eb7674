"""systemd service notifications (sd_notify(3)) sent from the agent's event loop.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for
the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``).  The agent sends ``READY=1`` once its sources have started and
the HTTP endpoint listens, then ``WATCHDOG=1`` every half ``WATCHDOG_USEC``
(sd_watchdog_enabled(3) recommends pinging at half the timeout), and
``STOPPING=1`` on exit.

The pings come from a task on the event loop, not from a thread: when the loop
hangs (a blocking call on it, a deadlock), the pings stop and systemd restarts
the service after ``WatchdogSec``.  Sending is a non-blocking datagram; a full
or missing socket loses that one message and never stalls the loop.

Debug aid, for the watchdog test only: when the environment variable
``TIMEMON_DEBUG_STALL_ON_SIGUSR2`` is set to a number of seconds, SIGUSR2 makes the
event loop sleep that long (a deliberately hung loop).  Without the variable no
SIGUSR2 handler is installed; never set it in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time

log = logging.getLogger("timemon.sdnotify")

STALL_ENV = "TIMEMON_DEBUG_STALL_ON_SIGUSR2"


class Notifier:
    """A datagram socket to systemd's ``NOTIFY_SOCKET``."""

    def __init__(self, address: str) -> None:
        # sd_notify(3): an address starting with '@' is in the abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)

    def send(self, message: str) -> bool:
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError as exc:  # no listener, queue full: lose this one, never block
            log.debug("sd_notify %r failed: %s", message, exc)
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def watchdog_period(environ: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when the
    watchdog is off or meant for another process (WATCHDOG_PID, sd_watchdog_enabled(3))."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class ServiceNotifier:
    """READY=1 now, WATCHDOG=1 from the running event loop, STOPPING=1 at ``stop()``."""

    def __init__(self, notifier: Notifier, period: float | None) -> None:
        self.notifier = notifier
        self.period = period
        self.pings = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, status: str = "") -> None:
        self.notifier.send("READY=1" + (f"\nSTATUS={status}" if status else ""))
        if self.period is not None:
            self._task = asyncio.get_running_loop().create_task(self._ping(self.period),
                                                                name="sd-watchdog")
            log.info("systemd watchdog: pinging every %.3g s", self.period)

    async def _ping(self, period: float) -> None:
        while True:
            # Paced by the monotonic clock; a late loop (the thing the watchdog is for)
            # shows as a late ping, never as a burst of pings catching up.
            started = time.monotonic()
            if self.notifier.send("WATCHDOG=1"):
                self.pings += 1
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.notifier.send("STOPPING=1")
        self.notifier.close()


def start_notifier(status: str = "") -> ServiceNotifier | None:
    """Send READY=1 and start the watchdog pings when run by systemd (``NOTIFY_SOCKET``
    set); otherwise do nothing and return None.  Call from the running event loop."""
    _install_debug_stall()
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    notifier = ServiceNotifier(Notifier(address), watchdog_period())
    notifier.start(status)
    return notifier


async def stop_notifier(notifier: ServiceNotifier | None) -> None:
    if notifier is not None:
        await notifier.stop()
    _remove_debug_stall()


def _install_debug_stall() -> None:
    seconds = os.environ.get(STALL_ENV, "")
    if not seconds:
        return
    try:
        stall = float(seconds)
    except ValueError:
        log.error("%s=%r is not a number of seconds; ignored", STALL_ENV, seconds)
        return
    loop = asyncio.get_running_loop()
    log.warning("%s is set: SIGUSR2 blocks the event loop for %g s (test aid)", STALL_ENV, stall)
    # The handler runs on the loop itself, so time.sleep really hangs it.
    loop.add_signal_handler(signal.SIGUSR2, time.sleep, stall)


def _remove_debug_stall() -> None:
    if os.environ.get(STALL_ENV):
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
