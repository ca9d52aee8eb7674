"""NTP's clock filter (RFC 5905 section 10), on integer-ns sample times.

Keeps the last eight exchanges with one server, ages their dispersion, and
picks the one with the smallest round-trip delay: the sample least disturbed
by queueing.  Jitter is the RMS difference of the others' offsets from the
pick.  Pure computation: no clock is read here, time comes in as arguments.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from operator import attrgetter

FILTER_STAGES = 8
PHI = 15e-6  # frequency tolerance, s/s (RFC 5905 section 7.2)
MAX_DISPERSION = 16.0  # seconds


# Not frozen (one of each a poll): see ntp_packet.ServerReply.
@dataclass(slots=True)
class FilterEntry:
    t_ns: int  # local time of the exchange
    offset: float  # seconds, local − reference
    delay: float  # seconds
    dispersion: float  # seconds, at t_ns


@dataclass(slots=True)
class FilterPick:
    offset: float
    delay: float
    dispersion: float  # the filter dispersion epsilon (RFC 5905 eq. in section 10)
    jitter: float
    t_ns: int


_delay = attrgetter("delay")


class ClockFilter:
    def __init__(self, stages: int = FILTER_STAGES) -> None:
        self._entries: deque[FilterEntry] = deque(maxlen=stages)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: FilterEntry) -> FilterPick:
        self._entries.append(entry)
        return self.pick(entry.t_ns)

    def pick(self, now_ns: int) -> FilterPick:
        """The minimum-delay entry, with dispersions aged to ``now_ns``."""
        if not self._entries:
            raise ValueError("empty clock filter")
        # By delay; equal delays keep their arrival order (sorted is stable).
        by_delay = sorted(self._entries, key=_delay)
        best = by_delay[0]
        best_offset = best.offset
        # epsilon = sum(eps_i / 2^(i+1)) over the delay-sorted stages, eps_i aged by PHI
        dispersion = 0.0
        weight = 0.5
        squares = 0.0
        for e in by_delay:
            aged = e.dispersion + PHI * (now_ns - e.t_ns) / 1e9
            dispersion += (aged if aged < MAX_DISPERSION else MAX_DISPERSION) * weight
            weight *= 0.5
            difference = e.offset - best_offset
            squares += difference * difference  # not ** 2: a pow() call, 8 a poll
        jitter = math.sqrt(squares / (len(by_delay) - 1)) if len(by_delay) > 1 else 0.0
        return FilterPick(best.offset, best.delay, dispersion, jitter, best.t_ns)
