"""What every measurement source shares: its samples, counters and generic metrics.

A source runs on the agent's event loop and owns its own schedule.  The
exporter thread only reads the plain attributes below (single assignments
under the GIL) and copies the error counter, so a scrape never waits on a probe
and a probe never waits on a scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from timemon.families import SOURCE_LABELS, Column, Families, Fragment, LabelSet

if TYPE_CHECKING:
    from timemon.live import LiveResult, LiveSeries

log = logging.getLogger("timemon.source")


@dataclass(slots=True)
class Sample:
    """One accepted raw measurement of a reference.

    ``t_ns`` is the local time of the measurement (Unix ns); ``offset`` is
    local − reference in seconds (DESIGN.md's sign); ``delay`` is the round
    trip where the protocol has one.  Not frozen (made at every poll; nothing
    changes one once made): see ``probes/ntp_packet.py``'s ``ServerReply``.
    """

    t_ns: int
    offset: float
    delay: float | None = None


class ProbeError(Exception):
    """A failed poll or query of any kind; ``reason`` is the label of
    ``timemon_probe_errors_total`` (README lists the set).  Each probe subclasses it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# Called for every accepted sample: the store and the statistics take it from there.
SampleSink = Callable[["Source", Sample], None]


def _discard(_source: Source, _sample: Sample) -> None:
    pass


class Source:
    """Base of every probe that the agent schedules."""

    kind = "unknown"
    #: A reference exports the generic offset families; the kernel does not.
    is_reference = True
    #: This kind's own one-sample-per-source families (after GENERIC_COLUMNS).
    COLUMNS: tuple[Column, ...] = ()

    def __init__(self, name: str, interval: float, sink: SampleSink | None = None) -> None:
        self.name = name
        # (source, kind): formatted once, used by every per-source family.
        self.label_values = LabelSet(SOURCE_LABELS, (name, self.kind))
        self.interval = interval
        self.sink: SampleSink = sink or _discard
        self.up = False
        self.samples_total = 0
        self.errors: Counter[str] = Counter()
        self.errors_changed = 0  # count_error calls: a scrape's text of ``errors`` is stale
        self.last_sample_ns: int | None = None
        self.offset: float | None = None
        self.delay: float | None = None
        self.jitter: float | None = None
        self.error_bound: float | None = None
        # The half-width of the correctness interval around the offset, for the
        # cross-checks (README: Error bounds); set by sources that know it.
        self.root_distance: float | None = None
        self.probe_duration: float | None = None
        self.last_error: str = ""
        self.live: LiveSeries | None = None  # set by the agent for reference sources
        self._live_fragment: tuple[LiveResult, Fragment] | None = None
        self._own_fragment: tuple[Hashable, Fragment] | None = None
        self._logged_reasons: set[str] = set()

    # -- what probes call -------------------------------------------------

    def accept(self, sample: Sample) -> None:
        """Keep an accepted raw sample and hand it to the store and statistics."""
        self.samples_total += 1
        self.last_sample_ns = sample.t_ns
        self.sink(self, sample)

    def clear_estimate(self) -> None:
        """No current estimate: nothing stale is exported once a reference is lost."""
        self.offset = self.delay = self.jitter = self.error_bound = self.root_distance = None

    def count_error(self, reason: str, detail: str = "") -> None:
        """Count a rejected poll or reply under ``reason`` and log it once per reason."""
        self.errors[reason] += 1
        self.errors_changed += 1  # after the count: a scrape that sees it sees the count
        self.last_error = f"{reason}: {detail}" if detail else reason
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("source %s (%s): %s", self.name, self.kind, self.last_error)
        else:
            log.debug("source %s (%s): %s", self.name, self.kind, self.last_error)

    def set_up(self, up: bool) -> None:
        if up != self.up:
            log.info("source %s (%s) is %s", self.name, self.kind, "up" if up else "down")
            if up:
                self._logged_reasons.clear()
        self.up = up

    def restore(self, samples: list[Sample]) -> None:
        """Continue after a restart from the samples the store kept (the agent also
        feeds them to the live statistics)."""
        if samples and self.last_sample_ns is None:
            self.last_sample_ns = samples[-1].t_ns

    # -- what subclasses provide -----------------------------------------

    async def run(self) -> None:
        """Poll every ``interval`` seconds, counted from the start of each poll.

        Probes with their own schedule (NTP's back-off, a serial stream) override it.
        """
        while True:
            started = time.monotonic_ns()
            await self.poll_once()
            await sleep_until_monotonic(started + int(self.interval * 1e9))

    async def read_daemon(self, client: Any, reconnect: tuple[str, ...]) -> Any:
        """One ``await client.read_state()`` of a local daemon (ptp4l, chronyd), timed
        into ``probe_duration``.  A failure is counted and gives None; for a reason in
        ``reconnect`` the client's socket is closed, so the next poll opens a fresh one
        (the daemon may have restarted, or removed our socket)."""
        started = time.monotonic_ns()
        try:
            return await client.read_state()
        except ProbeError as exc:
            if exc.reason in reconnect:
                client.close()
            self.count_error(exc.reason, str(exc))
            return None
        finally:
            self.probe_duration = (time.monotonic_ns() - started) / 1e9

    async def poll_once(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    async def close(self) -> None:
        """Release sockets or files; called when the agent stops the source."""

    def collect_specific(self, out: Families) -> None:
        """Add protocol-specific families (``timemon_<kind>_*``)."""

    def reference_info(self) -> dict[str, str]:
        """What identifies the reference now (server and refid, grandmaster, receiver):
        recorded in the store for traceability reports when it changes.  A kind may
        give the same dict again while nothing changed; nobody changes it."""
        return {}

    def own_key(self) -> Hashable | None:
        """What the families of ``collect_own`` (but the live statistics) are made of,
        for a kind that knows: while it holds, scrapes reuse their text.  None (the
        default): they are built at every scrape."""
        return None

    def offset_labels(self) -> dict[str, str]:
        """Extra labels on ``timemon_offset_seconds`` (GNSS: ``quality`` = pps | serial)."""
        return {}

    def status(self) -> dict[str, Any]:
        """A summary for the landing page and ``--json`` output."""
        return {
            "source": self.name,
            "kind": self.kind,
            "up": self.up,
            "offset_seconds": self.offset,
            "delay_seconds": self.delay,
            "jitter_seconds": self.jitter,
            "samples_total": self.samples_total,
            "last_sample_timestamp_seconds": (
                self.last_sample_ns / 1e9 if self.last_sample_ns else None
            ),
            "last_error": self.last_error,
        }

    # -- exporter side ----------------------------------------------------

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        """The one-sample-per-source families of this kind of source, rendered for all
        its sources at once (``collect_sources``)."""
        return (GENERIC_COLUMNS if cls.is_reference else ()) + cls.COLUMNS

    def collect(self, out: Families) -> None:
        """All of this source's families (what ``collect_sources`` gives for it)."""
        collect_sources(out, (self,))

    def collect_own(self, out: Families, kept: list[Fragment]) -> None:
        """The families that are not columns: several samples, or extra labels.  Those
        whose text is kept (a ``Fragment``) go to ``kept``, for ``Families.merge_all``."""
        key = self.own_key()
        if key is None:
            self._collect_own_now(out)
        else:
            # These (error and KoD counts, the server's identity) change rarely; built
            # at every scrape, they made an in-process render at 1,000 NTP sources 4 to
            # 7 ms longer (of 35 to 50 ms).
            cached = self._own_fragment
            if cached is None or cached[0] != key:
                cached = (key, Fragment(self._own_families))
                self._own_fragment = cached  # one assignment: readers see old or new
            kept.append(cached[1])
        if self.is_reference and self.live is not None:
            kept.append(self.live_fragment(self.live.result))

    def _own_families(self) -> Families:
        out = Families()
        self._collect_own_now(out)
        return out

    def _collect_own_now(self, out: Families) -> None:
        if self.is_reference:
            self._collect_generic(out)
        self.collect_specific(out)

    def _collect_generic(self, out: Families) -> None:
        lv = self.label_values
        out.declare_counter("timemon_probe_errors",
                            "Polls or replies rejected, by reason (see README for the set).",
                            (*SOURCE_LABELS, "reason"))
        for reason, count in sorted(dict(self.errors).items()):
            out.counter("timemon_probe_errors", "", (*SOURCE_LABELS, "reason"),
                        (*lv, reason), count)
        if self.offset is not None:
            extra = self.offset_labels()
            if extra:  # else a column (GENERIC_COLUMNS)
                out.gauge_with("timemon_offset_seconds", _OFFSET_DOC,
                               {"source": self.name, "kind": self.kind, **extra}, self.offset)

    def live_fragment(self, result: LiveResult) -> Fragment:
        """The live statistics' families, rendered once per fold: by the statistics
        thread right after the fold (``Agent._compute_statistics``), so a scrape that
        follows the folds of 1,000 sources does not render them all; else here."""
        cached = self._live_fragment
        if cached is None or cached[0] is not result:
            lv = self.label_values
            cached = (result, Fragment(lambda: _live_families(result, lv)))
            self._live_fragment = cached  # one assignment: readers see old or new
        return cached[1]


def collect_sources(out: Families, sources: Sequence[Source]) -> None:
    """Every family of ``sources``: the columns of each kind of source for all its
    sources in one pass, then each source's other families."""
    by_kind: dict[type[Source], list[Source]] = {}
    for source in sources:
        by_kind.setdefault(type(source), []).append(source)
    for kind, group in by_kind.items():
        out.columns(kind.columns(), group)
    kept: list[Fragment] = []
    for source in sources:
        source.collect_own(out, kept)
    out.merge_all(kept)


_OFFSET_DOC = "Current best estimate of local minus reference time (positive: local ahead)."


def _offset_without_extra_labels(source: Source) -> float | None:
    return None if source.offset_labels() else source.offset


def _last_sample_seconds(source: Source) -> float | None:
    ns = source.last_sample_ns
    return None if ns is None else ns / 1e9


def _offset_steps(source: Source) -> int | None:
    live = source.live
    return None if live is None else live.steps


# The families every reference exports, one sample per source.
GENERIC_COLUMNS = (
    Column("timemon_source_up", "1 when the source's last poll gave an accepted sample.",
           "gauge", lambda source: 1.0 if source.up else 0.0),
    Column("timemon_samples", "Raw samples accepted from the source.", "counter",
           attrgetter("samples_total")),
    Column("timemon_offset_seconds", _OFFSET_DOC, "gauge", _offset_without_extra_labels),
    Column("timemon_delay_seconds", "Delay to the reference of the current best sample: NTP "
           "round trip, PTP mean path delay, chrony root delay.", "gauge", attrgetter("delay")),
    Column("timemon_jitter_seconds", "RMS difference of recent offsets from the best one.",
           "gauge", attrgetter("jitter")),
    Column("timemon_error_bound_seconds", "Upper bound of the local clock's error against this "
           "reference (README: formula).", "gauge", attrgetter("error_bound")),
    Column("timemon_probe_duration_seconds", "Time the last poll took (NTP: up to the reply's "
           "kernel receive stamp).", "gauge", attrgetter("probe_duration")),
    Column("timemon_last_sample_timestamp_seconds", "Unix time of the last accepted sample.",
           "gauge", _last_sample_seconds),
    Column("timemon_offset_steps", "Offset steps (a stepped clock) that restarted the "
           "stability window.", "counter", _offset_steps),
)


_STABILITY_FAMILIES = (
    ("timemon_allan_deviation", "adev",
     "Overlapping Allan deviation at tau seconds (dimensionless)."),
    ("timemon_modified_allan_deviation", "mdev",
     "Modified Allan deviation at tau seconds (dimensionless)."),
    ("timemon_time_deviation_seconds", "tdev", "Time deviation TDEV at tau seconds."),
    ("timemon_mtie_seconds", "mtie",
     "Maximum time interval error over the stability window at tau seconds."),
)


def _live_families(result: LiveResult, lv: LabelSet) -> Families:
    """The live statistics of one source: frequency offset, stability, masks."""
    from timemon.live import tau_label

    out = Families()
    if result.frequency_offset is not None:
        out.gauge("timemon_frequency_offset_ratio",
                  "Fractional frequency offset of the local clock against the reference "
                  "(least-squares slope of the offset over the stability window).",
                  SOURCE_LABELS, lv, result.frequency_offset)
    if result.sample_interval is not None:
        out.gauge("timemon_sample_interval_seconds",
                  "Mean interval between the samples of the stability window, measured: the "
                  "tau0 of the Allan deviations and the frequency offset (the tau labels are "
                  "multiples of the configured interval).",
                  SOURCE_LABELS, lv, result.sample_interval)
    labels = (*SOURCE_LABELS, "tau")
    for name, _attr, doc in _STABILITY_FAMILIES:
        out.declare_gauge(name, doc, labels)
    mask_labels = (*SOURCE_LABELS, "mask", "statistic")
    for mask, statistic, violated in result.mask_violations:
        out.gauge("timemon_mask_violation",
                  "1 when the live MTIE or TDEV exceeds the ITU-T mask at any exported tau.",
                  mask_labels, (*lv, mask, statistic), 1.0 if violated else 0.0)
    for mask, statistic, tau_s, limit in result.mask_limits:
        out.gauge("timemon_mask_limit_seconds",
                  "The configured ITU-T mask's MTIE or TDEV limit at tau seconds.",
                  (*mask_labels, "tau"), (*lv, mask, statistic, tau_label(tau_s)), limit)
    for point in result.points:
        tau = tau_label(point.tau)
        for name, attr, doc in _STABILITY_FAMILIES:
            value = getattr(point, attr)
            if value is not None:
                out.gauge(name, doc, labels, (*lv, tau), value)
    return out


def monotonic_ns() -> int:
    return time.monotonic_ns()


async def sleep_until_monotonic(deadline_ns: int) -> None:
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
