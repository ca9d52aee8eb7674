"""Cross-checks between a node's references, run by the agent on its own schedule.

Every ``PERIOD`` seconds, on the event loop (pure Python over a handful of
sources, microseconds), the intersection algorithm of
``timemon.analysis.selection`` runs over every reference that has a
correctness interval now, and the leap/UTC statements of all sources are
compared.  The result is an immutable ``CrossCheck`` that the exporter reads
(``AgentState.crosscheck``); scrapes never compute anything.

Correctness interval of each kind (README, "Error bounds"): NTP offset ± RFC 5905
root distance; chrony −"System time" ± (root dispersion + root delay / 2); PTP
offset ± (GM clockAccuracy + mean path delay); GNSS (PPS) offset ± (tAcc + |qErr|).
A source that is down has no interval.  The kernel is not a reference; it only
states its TAI offset and leap state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timemon.analysis.selection import (
    LEAP_DELETE,
    LEAP_INSERT,
    LEAP_NONE,
    Candidate,
    LeapCheck,
    Selection,
    check_leap,
    select,
    tai_utc_from_gps,
)
from timemon.families import SOURCE_LABELS, Families, Fragment

if TYPE_CHECKING:
    from timemon.exporter import AgentState
    from timemon.source import Source

log = logging.getLogger("timemon.crosscheck")

PERIOD = 5.0  # seconds between cross-checks


@dataclass(frozen=True)
class CrossCheck:
    selection: Selection
    leap: LeapCheck
    kinds: dict[str, str] = field(default_factory=dict)  # source -> kind


def candidate(source: Source) -> Candidate | None:
    """The source's correctness interval now, or None (down, or no accuracy known)."""
    if not source.is_reference or not source.up or source.offset is None:
        return None
    distance = getattr(source, "root_distance", None)
    if distance is None:
        return None
    return Candidate(source.name, source.kind, float(source.offset), float(distance))


def utc_statements(source: Source) -> tuple[int | None, int | None]:
    """(TAI − UTC, leap announced for the end of the day) as the source states them."""
    kind = source.kind
    if kind == "ntp":
        reply = getattr(source, "reply", None)
        if source.up and reply is not None and reply.leap in (LEAP_NONE, LEAP_INSERT,
                                                                LEAP_DELETE):
            return None, reply.leap
    elif kind == "chrony":
        state = getattr(source, "state", None)
        if state is not None and state.tracking.leap_status in (LEAP_NONE, LEAP_INSERT,
                                                                LEAP_DELETE):
            return None, state.tracking.leap_status
    elif kind == "ptp":
        state = getattr(source, "state", None)
        if state is not None and state.gm_present:
            tp = state.time_properties
            leap = LEAP_INSERT if tp.leap61 else LEAP_DELETE if tp.leap59 else LEAP_NONE
            tai = tp.current_utc_offset if tp.utc_offset_valid else None
            return tai, leap
    elif kind == "gnss":
        epoch = getattr(source, "epoch", None)
        if epoch is not None and epoch.leap_seconds is not None:
            return tai_utc_from_gps(epoch.leap_seconds), None
    elif kind == "kernel":
        clock = getattr(source, "clock", None)
        if clock is not None:
            tai = clock.tai_offset_seconds or None  # 0: the kernel was never told
            # adjtimex's return value: 1 TIME_INS, 2 TIME_DEL, 3 TIME_OOP (inserting now)
            state = clock.clock_state
            leap = LEAP_INSERT if state in (1, 3) else LEAP_DELETE if state == 2 else None
            return tai, leap
    return None, None


def compute(sources: Iterable[Source]) -> CrossCheck:
    """One cross-check over ``sources`` (pure: no I/O)."""
    cands = []
    tai: dict[str, int] = {}
    leap: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for source in sources:
        kinds[source.name] = source.kind
        c = candidate(source)
        if c is not None:
            cands.append(c)
        t, lp = utc_statements(source)
        if t is not None:
            tai[source.name] = int(t)
        if lp is not None:
            leap[source.name] = int(lp)
    return CrossCheck(select(cands), check_leap(tai, leap), kinds)


class CrossChecker:
    """Runs ``compute`` periodically over the agent's sources and publishes the result."""

    def __init__(self, state: AgentState, period: float = PERIOD) -> None:
        self.state = state
        self.period = period
        self._last_false: frozenset[str] = frozenset()
        self._last_majority = True
        self._last_leap = ""

    def check_once(self) -> CrossCheck:
        result = compute(self.state.sources)
        self._log_changes(result)
        self.state.crosscheck = result
        return result

    def _log_changes(self, result: CrossCheck) -> None:
        sel = result.selection
        if len(sel.candidates) >= 2 and sel.majority != self._last_majority:
            if sel.majority:
                log.info("references agree again: a majority of %d", len(sel.candidates))
            else:
                log.warning("no majority among %d references: %s", len(sel.candidates),
                            ", ".join(f"{c.source} {c.offset:+.6f}±{c.distance:.6f} s"
                                      for c in sel.candidates))
        self._last_majority = sel.majority or len(sel.candidates) < 2
        if sel.falsetickers != self._last_false:
            new = sorted(sel.falsetickers - self._last_false)
            if new:
                log.warning("falseticker(s): %s (intersection %+.6f..%+.6f s)",
                            ", ".join(new), sel.low or 0.0, sel.high or 0.0)
            self._last_false = sel.falsetickers
        described = "" if result.leap.consistent else result.leap.describe()
        if described != self._last_leap:
            if described:
                log.warning("sources disagree on UTC: %s (off the majority: %s)", described,
                            ", ".join(result.leap.disagreeing))
            else:
                log.info("sources agree on UTC and leap seconds again")
            self._last_leap = described

    async def run(self) -> None:
        while True:
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - a bug here must not stop the agent
                log.exception("cross-check failed")
            await asyncio.sleep(self.period)


# The last result's /metrics text, made once for the scrapes until the next check
# (every PERIOD s): at 1,000 references, making it was 6 % of a scrape's samples
# (py-spy, in the agent).  Holding the result keeps its id from being reused.  Two
# fragments: the falseticker marks, one sample per reference, are made again only when
# the candidates or the marks change (``_marks_key``), not at every check.  The first
# scrape after a check, 1,000 NTP references, in-process: 5.3-7.8 ms with the marks
# made again (median of 15), 1.1-1.2 ms with them kept; every fifth scrape pays it.
_kept: tuple[CrossCheck, Fragment, Fragment] | None = None
_kept_marks: tuple[Hashable, Fragment] | None = None


def collect(out: Families, result: CrossCheck | None) -> None:
    """The cross-check families (exporter side: reads the snapshot, no I/O)."""
    global _kept, _kept_marks
    if result is None:
        return
    kept = _kept
    if kept is None or kept[0] is not result:
        key = _marks_key(result.selection)
        marks = _kept_marks
        if marks is None or marks[0] != key:
            marks = _kept_marks = (key, Fragment(lambda: _mark_families(result.selection)))
        kept = _kept = (result, marks[1], Fragment(lambda: _families(result)))
    out.merge_all(kept[1:])


def _marks_key(sel: Selection) -> Hashable:
    """What ``_mark_families`` writes is made of."""
    return (tuple([(c.source, c.kind) for c in sel.candidates]), sel.majority,
            sel.falsetickers)


def _mark_families(sel: Selection) -> Families:
    out = Families()
    out.declare_gauge("timemon_falseticker",
                      "1 when the reference's correctness interval misses the intersection "
                      "of a majority (RFC 5905 11.2.1), 0 for a truechimer.", SOURCE_LABELS)
    if sel.majority:
        for c in sel.candidates:
            out.gauge("timemon_falseticker", "", SOURCE_LABELS, (c.source, c.kind),
                      1.0 if c.source in sel.falsetickers else 0.0)
    return out


def _families(result: CrossCheck) -> Families:
    out = Families()
    sel = result.selection
    out.gauge("timemon_reference_candidates",
              "References with a correctness interval in the last cross-check.", (), (),
              len(sel.candidates))
    if sel.candidates:
        out.gauge("timemon_reference_majority",
                  "1 when a majority of references share an intersection interval, 0 when "
                  "none does (then no source is marked).", (), (), 1.0 if sel.majority else 0.0)
    spread = sel.spread
    if spread is not None:
        out.gauge("timemon_reference_spread_seconds",
                  "Largest minus smallest offset of the truechimers.", (), (), spread)
    out.gauge("timemon_leap_consistent",
              "1 when every source states the same TAI - UTC and the same leap second for "
              "the end of the day (the log names those that disagree).", (), (),
              1.0 if result.leap.consistent else 0.0)
    return out


def as_json(result: CrossCheck | None) -> dict[str, Any] | None:
    if result is None:
        return None
    sel = result.selection
    return {
        "majority": sel.majority,
        "falsetickers": sorted(sel.falsetickers),
        "spread_seconds": sel.spread,
        "intersection_seconds": None if not sel.majority else [sel.low, sel.high],
        "leap_consistent": result.leap.consistent,
        "leap_disagreeing": list(result.leap.disagreeing),
        "tai_utc": dict(result.leap.tai_utc),
    }
