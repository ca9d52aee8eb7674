"""Asynchronous client of ptp4l's management socket, and the PTP source the agent schedules.

ptp4l (linuxptp) answers IEEE 1588 management messages on a Unix datagram
socket (``uds_address``, default ``/var/run/ptp4l``), as ``pmc -u`` uses it.
This client does the same natively: it binds its own socket in a private
temporary directory (mode 0700, removed on close), sends one GET per data set
with its own sequence id, and takes a reply only if its sequence id is one of
the poll's and its managementId is the one asked with that id.  Replies from
earlier, timed-out polls, or anything else, are ignored (counted as
``bad_sequence``).

Port-level data sets (PORT_DATA_SET, PORT_STATS_NP) are answered once per port;
the poll waits for ``numberPorts`` replies (from DEFAULT_DATA_SET).  The linuxptp
TLVs TIME_STATUS_NP and PORT_STATS_NP may be unknown to an older ptp4l, which
answers with a management error status: they are then absent, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timemon.probes import ptp_mgmt as mgmt

from timemon.families import SOURCE_LABELS, Families
from timemon.kinds import PTP_DEFAULT_DOMAIN, PTP_DEFAULT_INTERVAL, PTP_DEFAULT_UDS
from timemon.source import ProbeError, Sample, SampleSink, Source

log = logging.getLogger("timemon.probes.ptp")

DEFAULT_UDS = PTP_DEFAULT_UDS
DEFAULT_DOMAIN = PTP_DEFAULT_DOMAIN
DEFAULT_INTERVAL = PTP_DEFAULT_INTERVAL
DEFAULT_TIMEOUT = 1.0

REQUIRED_IDS = (mgmt.DEFAULT_DATA_SET, mgmt.CURRENT_DATA_SET, mgmt.PARENT_DATA_SET,
                mgmt.TIME_PROPERTIES_DATA_SET, mgmt.PORT_DATA_SET)
OPTIONAL_IDS = (mgmt.TIME_STATUS_NP, mgmt.PORT_STATS_NP)  # linuxptp-specific
QUERY_IDS = REQUIRED_IDS + OPTIONAL_IDS

PORT_STATE_HELP = ("Port state (IEEE 1588-2008 Table 8): 1 INITIALIZING, 2 FAULTY, 3 DISABLED, "
                   "4 LISTENING, 5 PRE_MASTER, 6 MASTER, 7 PASSIVE, 8 UNCALIBRATED, 9 SLAVE "
                   "(10 linuxptp GRAND_MASTER).")

RejectCallback = Callable[[str, str], None]

# clockAccuracy (IEEE 1588-2008 Table 6; 0x17-0x1F added by IEEE 1588-2019 Table 5): the
# upper bound of the grandmaster's time error, in seconds.  0x31 (> 10 s), 0xFE (unknown)
# and reserved values have no bound.
CLOCK_ACCURACY_SECONDS = {
    0x17: 1e-12, 0x18: 2.5e-12, 0x19: 10e-12, 0x1A: 25e-12, 0x1B: 100e-12, 0x1C: 250e-12,
    0x1D: 1e-9, 0x1E: 2.5e-9, 0x1F: 10e-9, 0x20: 25e-9, 0x21: 100e-9, 0x22: 250e-9,
    0x23: 1e-6, 0x24: 2.5e-6, 0x25: 10e-6, 0x26: 25e-6, 0x27: 100e-6, 0x28: 250e-6,
    0x29: 1e-3, 0x2A: 2.5e-3, 0x2B: 10e-3, 0x2C: 25e-3, 0x2D: 100e-3, 0x2E: 250e-3,
    0x2F: 1.0, 0x30: 10.0,
}


class PtpProbeError(ProbeError):
    """A failed poll of ptp4l."""


# -- what a poll reads ----------------------------------------------------------------


@dataclass(frozen=True)
class PtpState:
    """The data sets of one poll of a ptp4l instance.

    ``time_status`` and ``port_stats`` are None / empty when ptp4l does not know
    the linuxptp TLVs.  ``t_ns`` is the local (CLOCK_REALTIME) time of the poll.
    """

    t_ns: int
    default: mgmt.DefaultDataSet
    current: mgmt.CurrentDataSet
    parent: mgmt.ParentDataSet
    time_properties: mgmt.TimePropertiesDataSet
    ports: tuple[mgmt.PortDataSet, ...]
    time_status: mgmt.TimeStatusNp | None
    port_stats: tuple[mgmt.PortStatsNp, ...]

    @property
    def port(self) -> mgmt.PortDataSet:
        """The port the clock synchronises through (SLAVE or UNCALIBRATED), else the first."""
        for port in self.ports:
            if port.port_state in (mgmt.PORT_STATE_SLAVE, mgmt.PORT_STATE_UNCALIBRATED):
                return port
        return self.ports[0]

    @property
    def port_state(self) -> int:
        return self.port.port_state

    @property
    def gm_identity(self) -> bytes:
        return self.parent.gm_identity

    @property
    def following(self) -> bool:
        """A port is SLAVE or UNCALIBRATED: the clock follows a master."""
        return any(p.port_state in (mgmt.PORT_STATE_SLAVE, mgmt.PORT_STATE_UNCALIBRATED)
                   for p in self.ports)

    @property
    def gm_present(self) -> bool:
        """A grandmaster other than this clock, followed through a SLAVE/UNCALIBRATED port.

        ptp4l's own flag is TIME_STATUS_NP gmPresent (without it, the same rule:
        the parent data set's grandmaster is another clock).  But ptp4l 3.1.1
        leaves a slaveOnly clock's parent data set, and so gmPresent, as they
        were when its grandmaster went silent, while the port falls back to
        LISTENING; so a grandmaster counts as present only while a port follows it.
        """
        if self.time_status is not None:
            flagged = self.time_status.gm_present
        else:
            flagged = self.parent.gm_identity != self.default.clock_identity
        return flagged and self.following

    @property
    def has_reference(self) -> bool:
        """A port follows a master and ptp4l has measured an offset against it."""
        if not self.gm_present:
            return False
        # ptp4l zeroes ingress_time until the first sync of a new master is measured.
        return self.time_status is None or self.time_status.ingress_time_ns != 0

    @property
    def offset(self) -> float | None:
        """local − master in seconds: TIME_STATUS_NP master_offset, else offsetFromMaster.

        Both are slave − master already (IEEE 1588 clause 8.2.2.3; ptp4l's "master
        offset"), which is DESIGN.md's sign: no negation here.
        """
        if not self.has_reference:
            return None
        if self.time_status is not None:
            return self.time_status.master_offset_ns / 1e9
        return self.current.offset_from_master

    @property
    def offset_origin(self) -> str:
        return "TIME_STATUS_NP" if self.time_status is not None else "CURRENT_DATA_SET"

    @property
    def mean_path_delay(self) -> float:
        return self.current.mean_path_delay

    def messages(self) -> dict[tuple[str, str], int] | None:
        """PORT_STATS_NP counters summed over the ports, or None when ptp4l lacks them."""
        if not self.port_stats:
            return None
        total: dict[tuple[str, str], int] = {}
        for stats in self.port_stats:
            for key, count in stats.named().items():
                total[key] = total.get(key, 0) + count
        return total

    def as_json(self) -> dict[str, Any]:
        """What ``timemon probe ptp --json`` prints (keys mirror the metric names)."""
        tp, gm = self.time_properties, self.parent.gm_quality
        messages = self.messages()
        offset = self.offset
        return {
            "port_state": mgmt.port_state_name(self.port_state),
            "port_identity": str(self.port.port_identity),
            "offset_seconds": offset,
            "offset_origin": self.offset_origin if offset is not None else None,
            "delay_seconds": self.mean_path_delay,
            "mean_path_delay_seconds": self.mean_path_delay,
            "gm_identity": mgmt.clock_identity_text(self.gm_identity),
            "gm_present": self.gm_present,
            "clock_class": gm.clock_class,
            "clock_accuracy": gm.clock_accuracy,
            "offset_scaled_log_variance": gm.offset_scaled_log_variance,
            "priority1": self.parent.gm_priority1,
            "priority2": self.parent.gm_priority2,
            "steps_removed": self.current.steps_removed,
            "parent_port_identity": str(self.parent.parent_port),
            "utc_offset_seconds": tp.current_utc_offset,
            "utc_offset_valid": tp.utc_offset_valid,
            "leap59": tp.leap59,
            "leap61": tp.leap61,
            "time_traceable": tp.time_traceable,
            "frequency_traceable": tp.frequency_traceable,
            "ptp_timescale": tp.ptp_timescale,
            "time_source": tp.time_source,
            "clock_identity": mgmt.clock_identity_text(self.default.clock_identity),
            "domain": self.default.domain,
            "slave_only": self.default.slave_only,
            "number_ports": self.default.number_ports,
            "port_states": {str(p.port_identity.port_number): mgmt.port_state_name(p.port_state)
                            for p in self.ports},
            "sample_timestamp_seconds": self.t_ns / 1e9,
            "messages": None if messages is None else {
                direction: {m: c for (d, m), c in sorted(messages.items()) if d == direction}
                for direction in ("rx", "tx")},
        }


# -- the client -------------------------------------------------------------------------


class PtpClient:
    """GET requests to one ptp4l over its Unix datagram socket, from a private socket."""

    def __init__(self, uds_path: str = DEFAULT_UDS, domain: int = DEFAULT_DOMAIN,
                 timeout: float = DEFAULT_TIMEOUT, on_reject: RejectCallback | None = None
                 ) -> None:
        if not 0 <= domain <= 255:
            raise ValueError("domain must be 0-255")
        self.uds_path = uds_path
        self.domain = domain
        self.timeout = timeout
        self.on_reject = on_reject
        self._dir: str | None = None
        self._sock: socket.socket | None = None
        self._sequence = random.getrandbits(16)
        # The port number in our sourcePortIdentity, as pmc uses its pid (linuxptp pmc_common.c).
        self._source = mgmt.PortIdentity(bytes(8), os.getpid() & 0xFFFF)
        self.number_ports = 1

    @property
    def local_path(self) -> str | None:
        return None if self._dir is None else os.path.join(self._dir, "client.sock")

    def open(self) -> None:
        if self._sock is not None:
            return
        # mkdtemp makes the directory 0700: only we (and root, i.e. ptp4l) reach our socket.
        self._dir = tempfile.mkdtemp(prefix="timemon-ptp-")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(os.path.join(self._dir, "client.sock"))
        except OSError as exc:
            sock.close()
            self.close()
            raise PtpProbeError("network", f"cannot bind a client socket: {exc}") from exc
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PtpClient:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence

    def _reject(self, reason: str, detail: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason, detail)
        else:
            log.debug("ignored a reply: %s (%s)", reason, detail)

    def _send(self, datagram: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendto(datagram, self.uds_path)
        except FileNotFoundError as exc:
            raise PtpProbeError("no_socket", f"{self.uds_path} does not exist "
                                "(is ptp4l running? see uds_address)") from exc
        except ConnectionRefusedError as exc:
            raise PtpProbeError("no_socket", f"nothing listens on {self.uds_path} "
                                "(ptp4l stopped?)") from exc
        except PermissionError as exc:
            raise PtpProbeError("permission", f"no permission to write to {self.uds_path} "
                                "(ptp4l's socket is root 0660)") from exc
        except BlockingIOError as exc:
            raise PtpProbeError("timeout", f"{self.uds_path} is not reading its socket") from exc
        except OSError as exc:
            raise PtpProbeError("network", f"send to {self.uds_path} failed: {exc}") from exc

    async def get(self, ids: tuple[int, ...] = QUERY_IDS
                  ) -> dict[int, list[mgmt.ManagementMessage]]:
        """Send a GET for each id; return the replies of each id that answered in time.

        Waits until every id has its replies (one, or one per port for port-level
        ids, or an error status) or ``timeout``; ids without a reply are missing.
        """
        self.open()
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        pending: dict[int, int] = {}  # sequence id -> management id
        replies: dict[int, list[mgmt.ManagementMessage]] = {i: [] for i in ids}
        complete = asyncio.Event()

        def answered(mid: int) -> bool:
            got = replies[mid]
            if any(m.error is not None for m in got):
                return True
            want = self.number_ports if mid in mgmt.PORT_LEVEL_IDS else 1
            return len(got) >= want

        def on_readable() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._reject("network", f"receive failed: {exc}")
                    break
                try:
                    msg = mgmt.decode_message(data)
                except mgmt.PtpMgmtError as exc:
                    self._reject(exc.reason, str(exc))
                    continue
                mid = pending.get(msg.sequence_id)
                if mid is None:
                    self._reject("bad_sequence",
                                 f"reply with sequence id {msg.sequence_id}, not one of ours")
                    continue
                if msg.action != mgmt.ACTION_RESPONSE or msg.management_id != mid:
                    self._reject("malformed", f"{mgmt.ACTION_NAMES[msg.action]} for "
                                 f"0x{msg.management_id:04x} in reply to GET 0x{mid:04x}")
                    continue
                if mid == mgmt.DEFAULT_DATA_SET and msg.error is None:
                    with contextlib.suppress(mgmt.PtpMgmtError):
                        ports = mgmt.DefaultDataSet.decode(msg.data).number_ports
                        self.number_ports = max(1, ports)
                replies[mid].append(msg)
            if all(answered(mid) for mid in ids):
                complete.set()

        loop.add_reader(sock.fileno(), on_readable)
        try:
            for mid in ids:
                seq = self._next_sequence()
                pending[seq] = mid
                self._send(mgmt.encode_get(mid, seq, self.domain, self._source))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):  # not wait_for: see timemon.probes
                    await complete.wait()
        finally:
            loop.remove_reader(sock.fileno())
        return {mid: got for mid, got in replies.items() if got}

    async def read_state(self) -> PtpState:
        """One poll: every data set, decoded; errors as ``PtpProbeError``."""
        replies = await self.get(QUERY_IDS)
        t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
        missing = [mgmt.MANAGEMENT_IDS[mid] for mid in REQUIRED_IDS if mid not in replies]
        if missing:
            detail = (f"no reply from {self.uds_path} within {self.timeout:g} s"
                      if len(missing) == len(REQUIRED_IDS) else
                      f"no reply for {', '.join(missing)} within {self.timeout:g} s")
            raise PtpProbeError("timeout", detail + (f" (domain {self.domain}: ptp4l ignores "
                                                     "other domains)" if self.domain else ""))
        try:
            sets: dict[int, list[Any]] = {
                mid: [msg.dataset() for msg in replies[mid]] for mid in REQUIRED_IDS}
        except mgmt.PtpMgmtError as exc:
            raise PtpProbeError(exc.reason, str(exc)) from exc
        optional: dict[int, list[Any]] = {}
        for mid in OPTIONAL_IDS:
            try:
                optional[mid] = [msg.dataset() for msg in replies.get(mid, [])]
            except mgmt.ManagementErrorStatus as exc:
                log.debug("%s: %s absent (%s)", self.uds_path, mgmt.MANAGEMENT_IDS[mid], exc)
                optional[mid] = []
            except mgmt.PtpMgmtError as exc:
                raise PtpProbeError(exc.reason, str(exc)) from exc
        ports = tuple(sorted(sets[mgmt.PORT_DATA_SET],
                             key=lambda p: p.port_identity.port_number))
        time_status = optional[mgmt.TIME_STATUS_NP]
        return PtpState(
            t_ns=t_ns,
            default=sets[mgmt.DEFAULT_DATA_SET][0],
            current=sets[mgmt.CURRENT_DATA_SET][0],
            parent=sets[mgmt.PARENT_DATA_SET][0],
            time_properties=sets[mgmt.TIME_PROPERTIES_DATA_SET][0],
            ports=ports,
            time_status=time_status[0] if time_status else None,
            port_stats=tuple(optional[mgmt.PORT_STATS_NP]),
        )


async def probe_once(uds_path: str = DEFAULT_UDS, domain: int = DEFAULT_DOMAIN,
                     timeout: float = DEFAULT_TIMEOUT) -> PtpState:
    """What ``timemon probe ptp`` reads: one poll, the client socket removed afterwards."""
    rejects: list[tuple[str, str]] = []
    with PtpClient(uds_path, domain, timeout, on_reject=lambda r, d: rejects.append((r, d))
                   ) as client:
        try:
            return await client.read_state()
        finally:
            for reason, detail in rejects:
                log.warning("ignored a reply: %s (%s)", reason, detail)


# -- the source -------------------------------------------------------------------------


class PtpSource(Source):
    """One ptp4l instance (one ``uds`` socket), read on its own schedule."""

    kind = "ptp"

    def __init__(self, name: str, uds: str = DEFAULT_UDS, domain: int = DEFAULT_DOMAIN,
                 interval: float = DEFAULT_INTERVAL, timeout: float | None = None,
                 sink: SampleSink | None = None) -> None:
        super().__init__(name, interval, sink)
        self.uds = uds
        self.domain = domain
        # A reply well inside the interval, so a restarted ptp4l is back within two.
        self.timeout = timeout if timeout is not None else min(DEFAULT_TIMEOUT, interval / 2)
        self.client = PtpClient(uds, domain, self.timeout, on_reject=self.count_error)
        self.state: PtpState | None = None
        self.gm_changes = 0
        self._last_gm: bytes | None = None  # the last grandmaster seen present
        self._last_ingress: int | None = None

    async def poll_once(self) -> PtpState | None:
        # On a timeout, a fresh socket (and directory) next time, in case ours was removed.
        state = await self.read_daemon(self.client, ("timeout",))
        if state is None:
            self._lost()
            return None
        self._update(state)
        return state

    def _lost(self) -> None:
        # Nothing stale: without a reply there is no port state, offset or grandmaster.
        self.state = None
        self.clear_estimate()
        self.set_up(False)

    def _update(self, state: PtpState) -> None:
        if state.gm_present:
            if self._last_gm is not None and state.gm_identity != self._last_gm:
                self.gm_changes += 1
                log.warning("source %s: grandmaster changed from %s to %s", self.name,
                            mgmt.clock_identity_text(self._last_gm),
                            mgmt.clock_identity_text(state.gm_identity))
            self._last_gm = state.gm_identity
        self.state = state
        offset = state.offset
        if offset is None:
            self.clear_estimate()
            self.set_up(False)
            return
        self.offset = offset
        self.delay = state.mean_path_delay
        # Correctness interval half-width: the grandmaster's clockAccuracy plus the mean
        # path delay (the bound of the path asymmetry, as root delay / 2 is for NTP).
        accuracy = CLOCK_ACCURACY_SECONDS.get(state.parent.gm_quality.clock_accuracy)
        self.root_distance = (None if accuracy is None
                              else accuracy + abs(state.mean_path_delay))
        self.error_bound = (None if self.root_distance is None
                            else abs(offset) + self.root_distance)
        self.set_up(True)
        # One raw sample per measurement ptp4l made: skip a poll that sees the same sync.
        ingress = state.time_status.ingress_time_ns if state.time_status else None
        if ingress is None or ingress != self._last_ingress:
            self._last_ingress = ingress
            self.accept(Sample(state.t_ns, offset, state.mean_path_delay))

    async def close(self) -> None:
        self.client.close()

    # -- exporter ---------------------------------------------------------------------

    def collect_specific(self, out: Families) -> None:
        lv = self.label_values
        out.counter("timemon_ptp_gm_changes",
                    "Grandmaster changes seen (a new grandmaster identity while one is present).",
                    SOURCE_LABELS, lv, self.gm_changes)
        msg_labels = (*SOURCE_LABELS, "direction", "message")
        out.declare_counter("timemon_ptp_messages",
                            "PTP messages ptp4l received (rx) or sent (tx), all ports "
                            "(linuxptp PORT_STATS_NP; resets when ptp4l restarts).", msg_labels)
        state = self.state
        if state is None:
            return
        tp, quality = state.time_properties, state.parent.gm_quality

        def gauge(name: str, doc: str, value: float) -> None:
            out.gauge(name, doc, SOURCE_LABELS, lv, value)

        gauge("timemon_ptp_port_state", PORT_STATE_HELP, state.port_state)
        gauge("timemon_ptp_gm_present", "1 when the clock follows a grandmaster other than "
              "itself through a SLAVE or UNCALIBRATED port.", 1.0 if state.gm_present else 0.0)
        if state.gm_present:
            out.info("timemon_ptp_gm", "Identity of the grandmaster followed, as pmc prints it "
                     "(absent while none is present).", SOURCE_LABELS, lv,
                     {"gm_identity": mgmt.clock_identity_text(state.gm_identity)})
        gauge("timemon_ptp_clock_class", "Grandmaster clockClass (IEEE 1588-2008 7.6.2.4: "
              "6 locked to a primary reference, 7 holdover, 52/187 degraded, 248 default, "
              "255 slave-only).", quality.clock_class)
        gauge("timemon_ptp_clock_accuracy", "Grandmaster clockAccuracy (IEEE 1588-2008 Table 6: "
              "0x20 = 32 within 25 ns ... 0x31 = 49 beyond 10 s, 0xFE = 254 unknown).",
              quality.clock_accuracy)
        gauge("timemon_ptp_offset_scaled_log_variance",
              "Grandmaster offsetScaledLogVariance (IEEE 1588-2008 7.6.3.3; 65535 unknown).",
              quality.offset_scaled_log_variance)
        gauge("timemon_ptp_priority1", "Grandmaster priority1.", state.parent.gm_priority1)
        gauge("timemon_ptp_priority2", "Grandmaster priority2.", state.parent.gm_priority2)
        gauge("timemon_ptp_steps_removed", "Communication paths between this clock and the "
              "grandmaster (CURRENT_DATA_SET stepsRemoved).", state.current.steps_removed)
        gauge("timemon_ptp_utc_offset_seconds", "currentUtcOffset (TAI - UTC) announced by the "
              "grandmaster.", tp.current_utc_offset)
        gauge("timemon_ptp_utc_offset_valid", "1 when currentUtcOffset is flagged valid.",
              float(tp.utc_offset_valid))
        gauge("timemon_ptp_leap61", "1 when the last minute of the current UTC day has 61 s.",
              float(tp.leap61))
        gauge("timemon_ptp_leap59", "1 when the last minute of the current UTC day has 59 s.",
              float(tp.leap59))
        gauge("timemon_ptp_time_traceable", "1 when the grandmaster's time is traceable to a "
              "primary reference.", float(tp.time_traceable))
        gauge("timemon_ptp_frequency_traceable", "1 when the grandmaster's frequency is "
              "traceable to a primary reference.", float(tp.frequency_traceable))
        gauge("timemon_ptp_timescale", "1 PTP timescale (TAI epoch), 0 ARB.",
              float(tp.ptp_timescale))
        gauge("timemon_ptp_time_source", "timeSource (IEEE 1588-2008 Table 7: 0x10 = 16 atomic, "
              "0x20 = 32 GPS, 0x40 = 64 PTP, 0x50 = 80 NTP, 0xA0 = 160 internal oscillator).",
              tp.time_source)
        messages = state.messages()
        for (direction, message), count in sorted((messages or {}).items()):
            out.counter("timemon_ptp_messages", "", msg_labels, (*lv, direction, message), count)

    def reference_info(self) -> dict[str, str]:
        state = self.state
        if state is None:
            return {}
        return {"gm_identity": mgmt.clock_identity_text(state.gm_identity)}

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["uds"] = self.uds
        status["gm_changes_total"] = self.gm_changes
        if self.state is not None:
            data = self.state.as_json()
            data.pop("messages", None)
            status.update({k: v for k, v in data.items() if k not in status})
        return status
