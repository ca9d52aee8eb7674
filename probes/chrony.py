"""Asynchronous client of chronyd's command socket, and the chrony source the agent schedules.

chronyd answers chronyc's protocol (``chrony_proto``) on a Unix datagram socket
(``/run/chrony/chronyd.sock``, every report) and on UDP port 323 (the
monitoring reports it opens to the network: tracking, sources, sourcestats;
serverstats and authdata are refused there as "not authorised").

Over the Unix socket chronyd sends its reply to the client's bound address, so
the client binds its own socket in a private temporary directory (under
``$RUNTIME_DIRECTORY`` when systemd sets it, so a unit with ``PrivateTmp``
still shares the path with chronyd), removed on close.  The directory is
0711 and the socket 0666, as chronyc's own: chronyd drops root to the
``_chrony`` user and must be able to reach it by its (random) path.

A reply counts only if it carries the sequence number and command of the
request just sent; anything else is ignored and counted (``bad_sequence``).
"""

from __future__ import annotations

import asyncio
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

from timemon.probes import chrony_proto as cp

from timemon.address import HostPort
from timemon.families import SOURCE_LABELS, Families
from timemon.kinds import CHRONY_DEFAULT_INTERVAL, CHRONY_DEFAULT_PORT, CHRONY_DEFAULT_SOCKET
from timemon.source import ProbeError, Sample, SampleSink, Source

log = logging.getLogger("timemon.probes.chrony")

DEFAULT_SOCKET = CHRONY_DEFAULT_SOCKET
DEFAULT_PORT = CHRONY_DEFAULT_PORT
DEFAULT_INTERVAL = CHRONY_DEFAULT_INTERVAL
DEFAULT_TIMEOUT = 1.0
NO_KE = 0xFFFFFFFF  # authdata last_ke_ago: no key exchange yet

RejectCallback = Callable[[str, str], None]

LEAP_HELP = ("chronyd's leap status: 0 normal, 1 insert second, 2 delete second, "
             "3 not synchronised.")
MODE_HELP = "Source mode: 0 server (^), 1 peer (=), 2 reference clock (#)."
STATE_HELP = ("Source state as chronyd selects: 0 selected (*), 1 unusable (?), "
              "2 falseticker (x), 3 too variable (~), 4 combined (+), 5 not combined (-).")
AUTH_HELP = "Source authentication: 0 none, 1 symmetric key, 2 NTS."


class ChronyProbeError(ProbeError):
    """A failed poll of chronyd."""


# -- what a poll reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceReport:
    """One of chronyd's sources: its ``sources`` line, ``sourcestats`` and ``authdata``."""

    data: cp.SourceData
    stats: cp.SourceStats | None
    configured_name: str | None
    auth: cp.AuthData | None

    @property
    def name(self) -> str:
        """The ``address`` label: the source as ``chronyc -c sources`` prints it."""
        return self.data.name

    def as_json(self) -> dict[str, Any]:
        d, s = self.data, self.stats
        out: dict[str, Any] = {
            "address": self.name,
            "name": self.configured_name,
            "mode": d.mode_name,
            "state": d.state_name,
            "stratum": d.stratum,
            "poll": d.poll,
            "poll_interval_seconds": 2.0 ** d.poll,
            "reachability": d.reachability,
            "last_sample_age_seconds": d.since_sample,
            "last_sample_offset_seconds": d.latest_meas,
            "last_sample_original_offset_seconds": d.orig_latest_meas,
            "last_sample_error_seconds": d.latest_meas_err,
        }
        if s is not None:
            out.update({
                "samples": s.n_samples, "runs": s.n_runs, "span_seconds": s.span_seconds,
                "frequency_ratio": s.resid_freq_ppm * 1e-6, "skew_ratio": s.skew_ppm * 1e-6,
                "offset_seconds": s.est_offset, "offset_error_seconds": s.est_offset_err,
                "std_dev_seconds": s.sd,
            })
        if self.auth is not None:
            out["auth_mode"] = self.auth.mode_name
            if self.auth.mode == 2:
                out["nts_cookies"] = self.auth.cookies
                out["nts_ke_attempts"] = self.auth.ke_attempts
        return out


@dataclass(frozen=True)
class ChronyState:
    """Everything one poll read; ``t_ns`` is the local time after the tracking report."""

    t_ns: int
    tracking: cp.Tracking
    sources: tuple[SourceReport, ...]
    server_stats: cp.ServerStats | None

    @property
    def offset(self) -> float:
        """local − reference: minus chronyd's "System time" correction (DESIGN.md)."""
        return -self.tracking.current_correction

    @property
    def synchronised(self) -> bool:
        return self.tracking.leap_status != 3

    @property
    def root_distance(self) -> float:
        t = self.tracking
        return t.root_dispersion + t.root_delay / 2

    @property
    def error_bound(self) -> float:
        return abs(self.offset) + self.root_distance

    def as_json(self) -> dict[str, Any]:
        t = self.tracking
        return {
            "offset_seconds": self.offset if self.synchronised else None,
            "error_bound_seconds": self.error_bound if self.synchronised else None,
            "reference_id": f"{t.ref_id:08X}",
            "reference": t.name,
            "stratum": t.stratum,
            "reference_time_seconds": t.ref_time_ns / 1e9,
            "system_time_correction_seconds": t.current_correction,
            "last_offset_seconds": t.last_offset,
            "rms_offset_seconds": t.rms_offset,
            "frequency_ratio": t.freq_ppm * 1e-6,
            "residual_frequency_ratio": t.resid_freq_ppm * 1e-6,
            "skew_ratio": t.skew_ppm * 1e-6,
            "root_delay_seconds": t.root_delay,
            "root_dispersion_seconds": t.root_dispersion,
            "update_interval_seconds": t.last_update_interval,
            "leap_status": t.leap_status,
            "leap_status_text": t.leap_text,
            "sample_timestamp_seconds": self.t_ns / 1e9,
            "sources": [s.as_json() for s in self.sources],
            "server": None if self.server_stats is None else dict(self.server_stats.counters),
        }


# -- the client ------------------------------------------------------------------------------


class ChronyClient:
    """Requests to one chronyd, over its Unix socket (``socket_path``) or UDP (``address``)."""

    def __init__(self, socket_path: str | None = DEFAULT_SOCKET,
                 address: HostPort | None = None, timeout: float = DEFAULT_TIMEOUT,
                 on_reject: RejectCallback | None = None) -> None:
        if (socket_path is None) == (address is None):
            raise ValueError("give exactly one of socket_path and address")
        self.socket_path = socket_path
        self.address = address
        self.timeout = timeout
        self.on_reject = on_reject
        self._dir: str | None = None
        self._sock: socket.socket | None = None
        self._dest: Any = socket_path
        self._sequence = random.getrandbits(32)

    @property
    def target(self) -> str:
        return self.socket_path if self.socket_path is not None else str(self.address)

    @property
    def local_path(self) -> str | None:
        return None if self._dir is None else os.path.join(self._dir, "client.sock")

    @property
    def full_access(self) -> bool:
        """The Unix socket answers every report; UDP only the monitoring ones."""
        return self.socket_path is not None

    async def open(self) -> None:
        if self._sock is not None:
            return
        if self.socket_path is not None:
            self._open_unix()
        else:
            await self._open_udp()

    def _open_unix(self) -> None:
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
        try:
            self._dir = tempfile.mkdtemp(prefix="timemon-chrony-", dir=runtime)
            # chronyd (user _chrony) must reach our socket by its path: search-only dir.
            os.chmod(self._dir, 0o711)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as exc:
            self.close()
            raise ChronyProbeError("network", f"cannot create a client socket: {exc}") from exc
        try:
            sock.setblocking(False)
            path = os.path.join(self._dir, "client.sock")
            sock.bind(path)
            os.chmod(path, 0o666)
        except OSError as exc:
            sock.close()
            self.close()
            raise ChronyProbeError("network", f"cannot bind a client socket: {exc}") from exc
        self._sock = sock

    async def _open_udp(self) -> None:
        assert self.address is not None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.address.host, self.address.port,
                                           type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ChronyProbeError("resolve", f"cannot resolve {self.address.host}: "
                                   f"{exc}") from exc
        family, _type, _proto, _canon, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(sockaddr)  # replies from anywhere else never reach us
        except OSError as exc:
            sock.close()
            raise ChronyProbeError("network", f"cannot reach {self.address}: {exc}") from exc
        self._sock = sock
        self._dest = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> ChronyClient:
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    def _reject(self, reason: str, detail: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason, detail)
        else:
            log.debug("ignored a reply: %s (%s)", reason, detail)

    def _send(self, packet: bytes) -> None:
        sock = self._sock
        assert sock is not None
        try:
            if self._dest is None:
                sock.send(packet)
            else:
                sock.sendto(packet, self._dest)
        except FileNotFoundError as exc:
            raise ChronyProbeError("no_socket", f"{self.target} does not exist "
                                   "(is chronyd running? see bindcmdaddress)") from exc
        except ConnectionRefusedError as exc:
            raise ChronyProbeError("no_socket", f"nothing listens on {self.target} "
                                   "(chronyd stopped?)") from exc
        except PermissionError as exc:
            raise ChronyProbeError("permission", f"no permission to write to {self.target} "
                                   "(/run/chrony is 0750 _chrony: run as root or in the "
                                   "_chrony group)") from exc
        except BlockingIOError as exc:
            raise ChronyProbeError("timeout", f"{self.target} is not reading its "
                                   "socket") from exc
        except OSError as exc:
            raise ChronyProbeError("network", f"send to {self.target} failed: {exc}") from exc

    async def request(self, command: int, data: bytes = b"") -> cp.Reply:
        """One request and its checked reply; errors as ``ChronyProbeError``, a refusal
        (status other than success) as ``cp.ChronyStatusError``."""
        await self.open()
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        sequence = self._sequence
        done: asyncio.Future[cp.Reply] = loop.create_future()
        expected = cp.EXPECTED_REPLIES[command]

        def on_readable() -> None:
            while not done.done():
                try:
                    datagram = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionRefusedError:
                    done.set_exception(ChronyProbeError(
                        "no_socket", f"nothing listens on {self.target}"))
                    return
                except OSError as exc:
                    done.set_exception(ChronyProbeError("network", f"receive failed: {exc}"))
                    return
                seq = int.from_bytes(datagram[16:20], "big") if len(datagram) >= 20 else None
                if seq != sequence:
                    self._reject("bad_sequence", f"reply with sequence {seq}, not {sequence}")
                    continue
                try:
                    reply = cp.decode_reply(datagram)
                except cp.ChronyStatusError as exc:
                    if exc.command != command:
                        self._reject("malformed", f"reply to command {exc.command}")
                        continue
                    done.set_exception(exc)
                    return
                except cp.ChronyProtoError as exc:
                    done.set_exception(exc)
                    return
                if reply.command != command or reply.reply not in expected:
                    self._reject("malformed", f"reply {reply.reply} to command "
                                 f"{reply.command}, asked {command}")
                    continue
                done.set_result(reply)

        loop.add_reader(sock.fileno(), on_readable)
        try:
            self._send(cp.build_request(command, sequence, data))
            try:
                async with asyncio.timeout(self.timeout):  # not wait_for: see timemon.probes
                    return await done
            except TimeoutError as exc:
                raise ChronyProbeError("timeout", f"no reply from {self.target} within "
                                       f"{self.timeout:g} s") from exc
        finally:
            loop.remove_reader(sock.fileno())

    async def _optional(self, command: int, data: bytes = b"") -> cp.Reply | None:
        """A report chronyd may refuse (not authorised over UDP, no such source)."""
        try:
            return await self.request(command, data)
        except cp.ChronyStatusError as exc:
            log.debug("%s: command %d refused: %s", self.target, command, exc)
            return None

    async def read_state(self) -> ChronyState:
        """One poll: tracking, every source's data and statistics, server statistics."""
        try:
            tracking = (await self.request(cp.REQ_TRACKING)).report
            t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            n_sources = (await self.request(cp.REQ_N_SOURCES)).report
            assert isinstance(tracking, cp.Tracking) and isinstance(n_sources, int)
            sources = []
            for index in range(min(n_sources, 1024)):
                reply = await self._optional(cp.REQ_SOURCE_DATA, index.to_bytes(4, "big"))
                if reply is None:
                    continue  # the source went away between the two requests
                data = reply.report
                assert isinstance(data, cp.SourceData)
                if data.address.family == cp.IPADDR_ID:
                    continue  # not resolved yet: no measurements (chronyc hides it too)
                stats_reply = await self._optional(cp.REQ_SOURCESTATS, index.to_bytes(4, "big"))
                stats = stats_reply.report if stats_reply is not None else None
                assert stats is None or isinstance(stats, cp.SourceStats)
                name = auth = None
                if data.mode != 2:  # NTP sources have a configured name and authentication
                    name_reply = await self._optional(cp.REQ_NTP_SOURCE_NAME,
                                                      data.address.encode())
                    name = name_reply.report if name_reply is not None else None
                    if self.full_access:
                        auth_reply = await self._optional(cp.REQ_AUTH_DATA,
                                                          data.address.encode())
                        auth = auth_reply.report if auth_reply is not None else None
                assert name is None or isinstance(name, str)
                assert auth is None or isinstance(auth, cp.AuthData)
                sources.append(SourceReport(data, stats, name, auth))
            server = None
            if self.full_access:
                server_reply = await self._optional(cp.REQ_SERVER_STATS)
                server = server_reply.report if server_reply is not None else None
                assert server is None or isinstance(server, cp.ServerStats)
        except cp.ChronyStatusError as exc:
            raise ChronyProbeError(exc.reason, f"{self.target}: {exc}") from exc
        except cp.ChronyProtoError as exc:
            raise ChronyProbeError(exc.reason, f"{self.target}: {exc}") from exc
        return ChronyState(t_ns, tracking, tuple(sources), server)


async def probe_once(socket_path: str | None = DEFAULT_SOCKET, address: HostPort | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> ChronyState:
    """What ``timemon probe chrony`` reads: one poll, the client socket removed afterwards."""
    rejects: list[tuple[str, str]] = []
    client = ChronyClient(socket_path, address, timeout,
                          on_reject=lambda r, d: rejects.append((r, d)))
    try:
        return await client.read_state()
    finally:
        client.close()
        for reason, detail in rejects:
            log.warning("ignored a reply: %s (%s)", reason, detail)


# -- the source --------------------------------------------------------------------------------


class ChronySource(Source):
    """The node's chronyd, read on its own schedule.

    Its generic offset is chronyd's own estimate of the node's clock: minus the
    tracking report's "System time" (a correction, reference − local).
    """

    kind = "chrony"

    def __init__(self, name: str, socket_path: str | None = DEFAULT_SOCKET,
                 address: HostPort | None = None, interval: float = DEFAULT_INTERVAL,
                 timeout: float | None = None, sink: SampleSink | None = None) -> None:
        super().__init__(name, interval, sink)
        self.timeout = timeout if timeout is not None else min(DEFAULT_TIMEOUT, interval / 2)
        self.client = ChronyClient(socket_path, address, self.timeout,
                                   on_reject=self.count_error)
        self.state: ChronyState | None = None

    async def poll_once(self) -> ChronyState | None:
        state = await self.read_daemon(self.client, ("timeout", "no_socket"))
        if state is None:
            self._lost()
            return None
        self._update(state)
        return state

    def _lost(self) -> None:
        self.state = None
        self.clear_estimate()
        self.set_up(False)

    def _update(self, state: ChronyState) -> None:
        self.state = state
        if not state.synchronised:
            self.clear_estimate()
            self.count_error("unsynchronised", f"chronyd is not synchronised "
                             f"(reference {state.tracking.ref_id:08X})")
            self.set_up(False)
            return
        t = state.tracking
        self.offset = state.offset
        self.delay = t.root_delay
        self.jitter = t.rms_offset
        self.root_distance = state.root_distance
        self.error_bound = state.error_bound
        self.accept(Sample(state.t_ns, state.offset, t.root_delay))
        self.set_up(True)

    async def close(self) -> None:
        self.client.close()

    # -- exporter ------------------------------------------------------------------------------

    def collect_specific(self, out: Families) -> None:
        state = self.state
        if state is None:
            return
        lv = self.label_values
        t = state.tracking

        def gauge(name: str, doc: str, value: float) -> None:
            out.gauge(name, doc, SOURCE_LABELS, lv, value)

        out.info("timemon_chrony_reference", "The reference chronyd tracks (tracking report).",
                 SOURCE_LABELS, lv, {"ref_id": f"{t.ref_id:08X}", "reference": t.name})
        gauge("timemon_chrony_stratum", "chronyd's stratum.", t.stratum)
        gauge("timemon_chrony_reference_time_seconds",
              "Unix time of chronyd's last clock update.", t.ref_time_ns / 1e9)
        gauge("timemon_chrony_system_time_correction_seconds",
              "chronyc's 'System time': the correction chronyd is still slewing in, reference "
              "- local (positive: the local clock is slow). Not an offset: "
              "timemon_offset_seconds is its negation.", t.current_correction)
        gauge("timemon_chrony_last_offset_seconds",
              "Estimated local offset at the last clock update (positive: local ahead).",
              t.last_offset)
        gauge("timemon_chrony_rms_offset_seconds", "Long-term average of the offset.",
              t.rms_offset)
        gauge("timemon_chrony_frequency_ratio",
              "Rate at which the system clock would gain time without chronyd's correction "
              "(positive: fast; chronyc's Frequency in ppm times 1e-6).", t.freq_ppm * 1e-6)
        gauge("timemon_chrony_residual_frequency_ratio",
              "Residual frequency of the selected reference (chronyc's Residual freq).",
              t.resid_freq_ppm * 1e-6)
        gauge("timemon_chrony_skew_ratio", "Estimated error bound of the frequency.",
              t.skew_ppm * 1e-6)
        gauge("timemon_chrony_root_delay_seconds", "Root delay of chronyd's reference.",
              t.root_delay)
        gauge("timemon_chrony_root_dispersion_seconds",
              "Root dispersion of chronyd's reference.", t.root_dispersion)
        gauge("timemon_chrony_update_interval_seconds",
              "Interval between chronyd's last two clock updates.", t.last_update_interval)
        gauge("timemon_chrony_leap_status", LEAP_HELP, t.leap_status)
        gauge("timemon_chrony_sources", "Sources chronyd reports (resolved ones).",
              len(state.sources))
        self._collect_sources(out, state.sources)
        if state.server_stats is not None:
            self._collect_server(out, state.server_stats)

    def _collect_sources(self, out: Families, sources: tuple[SourceReport, ...]) -> None:
        labels = (*SOURCE_LABELS, "address")
        seen: set[str] = set()
        for src in sources:
            if src.name in seen:  # two reference clocks with one refid: keep the first
                continue
            seen.add(src.name)
            lv = (self.name, self.kind, src.name)
            d = src.data

            def gauge(name: str, doc: str, value: float, lv: tuple[str, ...] = lv) -> None:
                out.gauge(name, doc, labels, lv, value)

            out.info("timemon_chrony_source", "A source of chronyd: the name it was "
                     "configured with.", labels, lv, {"name": src.configured_name or ""})
            gauge("timemon_chrony_source_mode", MODE_HELP, d.mode)
            gauge("timemon_chrony_source_state", STATE_HELP, d.state)
            gauge("timemon_chrony_source_stratum", "Stratum of the source.", d.stratum)
            gauge("timemon_chrony_source_poll_interval_seconds",
                  "Current polling interval of the source (2^poll).", 2.0 ** d.poll)
            gauge("timemon_chrony_source_reachability",
                  "Reachability register: the last 8 polls as bits (255: all answered).",
                  d.reachability)
            gauge("timemon_chrony_source_last_sample_age_seconds",
                  "Time since the source's last sample (chronyc's LastRx).", d.since_sample)
            gauge("timemon_chrony_source_last_sample_offset_seconds",
                  "Adjusted offset of the last sample, local - source.", d.latest_meas)
            gauge("timemon_chrony_source_last_sample_error_seconds",
                  "Error bound of the last sample (chronyc's +/- value).", d.latest_meas_err)
            s = src.stats
            if s is not None:
                gauge("timemon_chrony_sourcestats_samples",
                      "Sample points in the source's measurement set.", s.n_samples)
                gauge("timemon_chrony_sourcestats_runs",
                      "Runs of residuals with the same sign.", s.n_runs)
                gauge("timemon_chrony_sourcestats_span_seconds",
                      "Time span of the measurement set.", s.span_seconds)
                gauge("timemon_chrony_sourcestats_frequency_ratio",
                      "Estimated residual frequency of the source.", s.resid_freq_ppm * 1e-6)
                gauge("timemon_chrony_sourcestats_skew_ratio",
                      "Estimated error bound of that frequency.", s.skew_ppm * 1e-6)
                gauge("timemon_chrony_sourcestats_offset_seconds",
                      "Estimated offset of the source, local - source.", s.est_offset)
                gauge("timemon_chrony_sourcestats_std_dev_seconds",
                      "Estimated sample standard deviation.", s.sd)
            a = src.auth
            if a is not None:
                gauge("timemon_chrony_source_auth_mode", AUTH_HELP, a.mode)
                if a.mode == 2:
                    gauge("timemon_chrony_source_nts_cookies", "NTS cookies held.", a.cookies)
                    gauge("timemon_chrony_source_nts_ke_attempts",
                          "NTS-KE attempts since the last success.", a.ke_attempts)
                    if a.last_ke_ago != NO_KE:
                        gauge("timemon_chrony_source_nts_last_ke_age_seconds",
                              "Time since the last NTS key exchange.", a.last_ke_ago)

    def _collect_server(self, out: Families, stats: cp.ServerStats) -> None:
        c = stats.counters
        lv = self.label_values
        svc = (*SOURCE_LABELS, "service")
        for service in ("ntp", "nke", "cmd"):
            if f"{service}_hits" in c:
                out.counter("timemon_chrony_server_requests",
                            "Requests chronyd received as a server, by service (ntp, nke "
                            "NTS-KE, cmd command).", svc, (*lv, service), c[f"{service}_hits"])
            if f"{service}_drops" in c:
                out.counter("timemon_chrony_server_dropped_requests",
                            "Requests chronyd dropped by rate limiting, by service.", svc,
                            (*lv, service), c[f"{service}_drops"])
        simple = (
            ("log_drops", "timemon_chrony_server_log_drops",
             "Client log records dropped (the client log was full)."),
            ("ntp_auth_hits", "timemon_chrony_server_authenticated_ntp_requests",
             "Authenticated NTP requests served."),
            ("ntp_interleaved_hits", "timemon_chrony_server_interleaved_ntp_requests",
             "NTP requests answered in interleaved mode."),
        )
        for key, name, doc in simple:
            if key in c:
                out.counter(name, doc, SOURCE_LABELS, lv, c[key])
        if "ntp_timestamps" in c:
            out.gauge("timemon_chrony_server_timestamps",
                      "Server timestamps held for interleaved mode.", SOURCE_LABELS, lv,
                      c["ntp_timestamps"])
            out.gauge("timemon_chrony_server_timestamp_span_seconds",
                      "Time span of the timestamps held.", SOURCE_LABELS, lv,
                      c["ntp_span_seconds"])
        ts_labels = (*SOURCE_LABELS, "direction", "origin")
        for origin in ("daemon", "kernel", "hw"):
            for direction in ("rx", "tx"):
                key = f"ntp_{origin}_{direction}_timestamps"
                if key in c:
                    out.counter("timemon_chrony_server_ntp_timestamps",
                                "Timestamps of served NTP packets by direction and origin "
                                "(daemon, kernel, hw) (chrony 4.4+).", ts_labels,
                                (*lv, direction, origin), c[key])

    def reference_info(self) -> dict[str, str]:
        state = self.state
        return {"reference": state.tracking.name} if state is not None else {}

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["target"] = self.client.target
        if self.state is not None:
            data = self.state.as_json()
            data.pop("sources", None)
            data.pop("server", None)
            status.update({k: v for k, v in data.items() if k not in status})
        return status
