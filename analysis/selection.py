"""Cross-checks between the references of one node: which one is lying, and do they
agree on UTC.

**Intersection** (RFC 5905 section 11.2.1, after Marzullo): each reference
gives a correctness interval, offset ± root distance, that contains the true
offset if the reference is correct.  The algorithm looks for the smallest
interval that contains points of the intervals of a majority of references,
allowing f = 0, 1, ... falsetickers while 2f < m; a reference whose interval
misses the intersection is a *falseticker*, the others are *truechimers*.
When no f < m/2 works there is no majority: the result says so, it does not
pick a side.  The error bound (``timemon_error_bound_seconds``) is not used:
|offset| + distance always contains zero, so every reference would agree.

**Leap and UTC consistency**: TAI − UTC as each source states it (PTP
currentUtcOffset, GNSS leap seconds GPS − UTC + 19, the kernel's TAI offset
where non-zero) must agree, and so must the leap second announced for the end
of the day (NTP and chrony leap indicators, PTP leap61/leap59, the kernel's
clock state).

Pure Python over a handful of sources: cheap enough for the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GPS_TAI_SECONDS = 19  # TAI − GPS, fixed since 1980-01-06 (GPS − UTC = TAI − UTC − 19)

# Leap second announced for the end of the current UTC day.
LEAP_NONE, LEAP_INSERT, LEAP_DELETE = 0, 1, 2
LEAP_NAMES = {LEAP_NONE: "none", LEAP_INSERT: "insert", LEAP_DELETE: "delete"}


@dataclass(frozen=True)
class Candidate:
    """A reference's correctness interval: ``offset`` ± ``distance`` (seconds, local − ref)."""

    source: str
    kind: str
    offset: float
    distance: float

    @property
    def low(self) -> float:
        return self.offset - self.distance

    @property
    def high(self) -> float:
        return self.offset + self.distance


@dataclass(frozen=True)
class Selection:
    """The intersection's outcome.  ``majority`` False: no interval is shared by more
    than half the candidates; then ``low``/``high`` are None and nobody is marked."""

    candidates: tuple[Candidate, ...]
    majority: bool
    low: float | None = None
    high: float | None = None
    falsetickers: frozenset[str] = field(default_factory=frozenset)

    @property
    def truechimers(self) -> tuple[Candidate, ...]:
        if not self.majority:
            return ()
        return tuple(c for c in self.candidates if c.source not in self.falsetickers)

    @property
    def spread(self) -> float | None:
        """max − min offset of the truechimers (0 for one), None without a majority."""
        chimers = self.truechimers
        if not chimers:
            return None
        offsets = [c.offset for c in chimers]
        return max(offsets) - min(offsets)


def select(candidates: Iterable[Candidate]) -> Selection:
    """RFC 5905 section 11.2.1 / Appendix A.5.5.1 intersection over ``candidates``.

    Endpoints are typed −1 (lower), 0 (midpoint), +1 (upper) and sorted; a lower
    endpoint sorts before an upper one at the same value, so touching intervals
    overlap.  Candidates with a non-finite or negative distance are ignored.
    """
    cands = tuple(c for c in candidates
                  if c.distance >= 0 and _finite(c.offset) and _finite(c.distance))
    m = len(cands)
    if m == 0:
        return Selection((), majority=False)
    points = sorted([(c.low, -1) for c in cands] + [(c.offset, 0) for c in cands]
                    + [(c.high, 1) for c in cands])
    allow = 0
    low = high = 0.0
    found_interval = False
    while 2 * allow < m:
        found = chime = 0
        low = points[-1][0]
        for value, kind in points:
            chime -= kind
            if chime >= m - allow:
                low = value
                break
            if kind == 0:
                found += 1
        chime = 0
        high = points[0][0]
        for value, kind in reversed(points):
            chime += kind
            if chime >= m - allow:
                high = value
                break
            if kind == 0:
                found += 1
        # More midpoints outside than falsetickers allowed, or an empty intersection:
        # allow one more falseticker.
        if found <= allow and low <= high:
            found_interval = True
            break
        allow += 1
    if not found_interval:
        return Selection(cands, majority=False)
    false = frozenset(c.source for c in cands if c.high < low or c.low > high)
    return Selection(cands, majority=True, low=low, high=high, falsetickers=false)


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


# -- leap seconds and UTC --------------------------------------------------------------------


@dataclass(frozen=True)
class LeapCheck:
    """What the sources say about UTC; ``disagreeing`` names those off the majority."""

    tai_utc: Mapping[str, int]  # source -> TAI − UTC it implies
    leap: Mapping[str, int]  # source -> LEAP_* announced for the end of the day
    disagreeing: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.disagreeing

    def describe(self) -> str:
        parts = []
        if len(set(self.tai_utc.values())) > 1:
            parts.append("TAI - UTC: " + ", ".join(
                f"{s} {v} s" for s, v in sorted(self.tai_utc.items())))
        if len(set(self.leap.values())) > 1:
            parts.append("leap second: " + ", ".join(
                f"{s} {LEAP_NAMES.get(v, v)}" for s, v in sorted(self.leap.items())))
        return "; ".join(parts) or "consistent"


def tai_utc_from_gps(leap_seconds: int) -> int:
    """GNSS leap seconds (GPS − UTC, 18 since 2017) to TAI − UTC (37)."""
    return leap_seconds + GPS_TAI_SECONDS


def _off_majority(values: Mapping[str, int]) -> set[str]:
    """Sources whose value is not the most common one (all of them on a tie)."""
    if len(set(values.values())) <= 1:
        return set()
    ranked = Counter(values.values()).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return set(values)
    return {s for s, v in values.items() if v != ranked[0][0]}


def check_leap(tai_utc: Mapping[str, int], leap: Mapping[str, int]) -> LeapCheck:
    disagree = _off_majority(tai_utc) | _off_majority(leap)
    return LeapCheck(dict(tai_utc), dict(leap), tuple(sorted(disagree)))
