"""ITU-T MTIE and TDEV limit masks as functions of the observation interval tau.

A mask is a list of segments ``lo < tau <= hi`` (the ITU tables' convention:
the lower end open, the upper end closed; ``hi`` is infinite for a last row
written "tau > x"), each with a limit ``a + b * tau**p`` in seconds. Outside
the tabulated range the mask defines nothing and the limit is NaN, so a NaN
limit never counts as a violation.

Every table below names the Recommendation, its edition and table number.
Where the Recommendation's own text could not be consulted, the comment says
where the numbers were checked instead (``Mask.provenance``). Masks whose
tables could not be found are not guessed: their contract names (DESIGN.md)
are listed in :data:`UNAVAILABLE` with the reason, and :func:`get_mask`
refuses them.

Order of :data:`MASKS` (stable, by clock hierarchy): G.811 PRC, G.812 node
clocks I-VI (when available), G.813 SEC, G.8272 PRTC-A, PRTC-B, G.8272.1 ePRTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
TauArray = npt.NDArray[Any] | Sequence[float]
Statistic = Literal["mtie", "tdev"]
STATISTICS: tuple[str, ...] = get_args(Statistic)

NS = 1e-9
US = 1e-6
INF = math.inf


class UnknownMask(ValueError):
    """A mask name that is not in :data:`MASKS`."""


@dataclass(frozen=True)
class Segment:
    """One table row: ``limit = a + b * tau**p`` (seconds) for ``lo < tau <= hi``."""

    lo: float
    hi: float
    a: float = 0.0
    b: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.lo < self.hi):
            raise ValueError(f"segment needs 0 <= lo < hi, got ({self.lo}, {self.hi}]")

    def at(self, tau: FloatArray) -> FloatArray:
        return self.a + self.b * np.power(tau, self.p)


def _row(lo: float, hi: float, a: float = 0.0, b: float = 0.0, p: float = 1.0,
         unit: float = NS) -> Segment:
    """A row written in the table's own unit (ns or us)."""
    return Segment(lo, hi, a * unit, b * unit, p)


def _evaluate(segments: tuple[Segment, ...], taus: npt.ArrayLike) -> FloatArray:
    t = np.asarray(taus, dtype=np.float64)
    out = np.full(t.shape, np.nan)
    for s in segments:
        # NaN and negative taus fail both comparisons and stay NaN
        sel = (t > s.lo) & (t <= s.hi)
        if np.any(sel):
            out[sel] = s.at(t[sel])
    return out


@dataclass(frozen=True)
class Mask:
    """An MTIE and/or TDEV limit mask.

    ``mtie_seconds`` / ``tdev_seconds`` take tau in seconds (a float or an
    array) and return the limit in seconds (a float for a scalar, an array of
    the same shape otherwise), NaN where the mask does not define tau, and all
    NaN for a statistic the mask has no table for.
    """

    name: str
    title: str
    reference: str
    mtie: tuple[Segment, ...] = ()
    tdev: tuple[Segment, ...] = ()
    provenance: str = ""

    def __post_init__(self) -> None:
        for stat, segs in (("mtie", self.mtie), ("tdev", self.tdev)):
            for left, right in zip(segs, segs[1:], strict=False):
                if left.hi != right.lo:
                    raise ValueError(f"{self.name} {stat}: segments must be contiguous and "
                                     f"sorted, got ({left.lo}, {left.hi}] then "
                                     f"({right.lo}, {right.hi}]")
        if not self.mtie and not self.tdev:
            raise ValueError(f"{self.name}: a mask needs an MTIE or a TDEV table")

    @property
    def has_mtie(self) -> bool:
        return bool(self.mtie)

    @property
    def has_tdev(self) -> bool:
        return bool(self.tdev)

    def segments(self, statistic: Statistic) -> tuple[Segment, ...]:
        if statistic == "mtie":
            return self.mtie
        if statistic == "tdev":
            return self.tdev
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")

    def tau_range(self, statistic: Statistic) -> tuple[float, float] | None:
        """(lo, hi] over which the mask defines ``statistic``; None without a table."""
        segs = self.segments(statistic)
        return (segs[0].lo, segs[-1].hi) if segs else None

    @overload
    def limit_seconds(self, statistic: Statistic, taus: float) -> float: ...
    @overload
    def limit_seconds(self, statistic: Statistic, taus: TauArray) -> FloatArray: ...

    def limit_seconds(self, statistic: Statistic, taus: npt.ArrayLike) -> float | FloatArray:
        out = _evaluate(self.segments(statistic), taus)
        return float(out) if out.ndim == 0 else out

    @overload
    def mtie_seconds(self, taus: float) -> float: ...
    @overload
    def mtie_seconds(self, taus: TauArray) -> FloatArray: ...

    def mtie_seconds(self, taus: npt.ArrayLike) -> float | FloatArray:
        return self.limit_seconds("mtie", taus)

    @overload
    def tdev_seconds(self, taus: float) -> float: ...
    @overload
    def tdev_seconds(self, taus: TauArray) -> FloatArray: ...

    def tdev_seconds(self, taus: npt.ArrayLike) -> float | FloatArray:
        return self.limit_seconds("tdev", taus)


# ---------------------------------------------------------------------------
# The tables. Rows are (lo, hi, a, b, p) meaning a + b * tau**p for lo < tau <= hi.

_G811 = Mask(
    name="G.811",
    title="Primary reference clock (PRC), wander generation",
    reference="ITU-T G.811 (09/1997) Table 1 (MTIE) and Table 2 (TDEV)",
    # ITU-T G.811 (09/1997), Table 1, MTIE in us: 0.275e-3*tau + 0.025 for
    # 0.1 < tau <= 1000 s; 1e-5*tau + 0.29 for tau > 1000 s (no upper end).
    mtie=(
        _row(0.1, 1000.0, a=0.025, b=0.275e-3, unit=US),
        _row(1000.0, INF, a=0.29, b=1e-5, unit=US),
    ),
    # ITU-T G.811 (09/1997), Table 2, TDEV in ns: 3 (0.1 < tau <= 100),
    # 0.03*tau (100 < tau <= 1000), 30 (1000 < tau <= 10 000).
    tdev=(
        _row(0.1, 100.0, a=3.0),
        _row(100.0, 1000.0, b=0.03),
        _row(1000.0, 10_000.0, a=30.0),
    ),
    provenance="segments as given in the issue brief; identical in allantools' ITU mask "
               "module (which cites G.811 (1997) Amd. 1 (04/2016)); the Recommendation "
               "text itself was not available to check the table numbers",
)

_G813 = Mask(
    name="G.813",
    title="SDH equipment slave clock (SEC), option 1, constant temperature, wander "
          "generation",
    reference="ITU-T G.813 (03/2003) clause 7.1, option 1: Table 1 (MTIE, constant "
              "temperature) and Table 3 (TDEV, constant temperature)",
    # ITU-T G.813 (03/2003), Table 1 (option 1, constant temperature +-1 K; the
    # variable-temperature allowance of Table 2 is not added), MTIE in ns:
    # 40 (0.1 < tau <= 1), 40*tau^0.1 (1 < tau <= 100), 25.25*tau^0.2 (100 < tau <= 1000).
    mtie=(
        _row(0.1, 1.0, a=40.0),
        _row(1.0, 100.0, b=40.0, p=0.1),
        _row(100.0, 1000.0, b=25.25, p=0.2),
    ),
    # ITU-T G.813 (03/2003), Table 3 (option 1, constant temperature), TDEV in ns:
    # 3.2 (0.1 < tau <= 25), 0.64*tau^0.5 (25 < tau <= 100), 6.4 (100 < tau <= 1000).
    tdev=(
        _row(0.1, 25.0, a=3.2),
        _row(25.0, 100.0, b=0.64, p=0.5),
        _row(100.0, 1000.0, a=6.4),
    ),
    provenance="segments as given in the issue brief (they agree with my reading of the "
               "Recommendation, and join where the segments meet); the G.813 text was not "
               "found in the search corpus, so table numbers are not re-checked",
)

_PRTC_A = Mask(
    name="G.8272-PRTC-A",
    title="Primary reference time clock, class A (PRTC-A), wander generation",
    reference="ITU-T G.8272/Y.1367 (11/2018) Table 1 (MTIE) and Table 3 (TDEV)",
    # ITU-T G.8272 (11/2018), Table 1, MTIE in us: 0.275e-3*tau + 0.025 for
    # 0.1 < tau <= 273 s; 0.10 for tau > 273 s (no upper end).
    mtie=(
        _row(0.1, 273.0, a=0.025, b=0.275e-3, unit=US),
        _row(273.0, INF, a=0.100, unit=US),
    ),
    # ITU-T G.8272 (11/2018), Table 3, TDEV in ns: 3 (0.1 < tau <= 100),
    # 0.03*tau (100 < tau <= 1000), 30 (1000 < tau <= 10 000).
    tdev=(
        _row(0.1, 100.0, a=3.0),
        _row(100.0, 1000.0, b=0.03),
        _row(1000.0, 10_000.0, a=30.0),
    ),
    provenance="segments as given in the issue brief; the same in allantools' ITU mask module "
               "(G.8272 (11/2018) Tables 1 and 3) and in a second public transcription citing "
               "G.8272 (07/2025) Tables 1 and 3 (which also gives the 10 000 s upper end)",
)

_PRTC_B = Mask(
    name="G.8272-PRTC-B",
    title="Primary reference time clock, class B (PRTC-B), wander generation",
    reference="ITU-T G.8272/Y.1367 (11/2018) Table 2 (MTIE) and Table 4 (TDEV)",
    # ITU-T G.8272 (11/2018), Table 2, MTIE in us: 0.275e-3*tau + 0.025 for
    # 0.1 < tau <= 54.5 s; 0.040 for tau > 54.5 s (no upper end).
    mtie=(
        _row(0.1, 54.5, a=0.025, b=0.275e-3, unit=US),
        _row(54.5, INF, a=0.040, unit=US),
    ),
    # ITU-T G.8272 (11/2018), Table 4, TDEV in ns: 1 (0.1 < tau <= 100),
    # 0.01*tau (100 < tau <= 500), 5 (500 < tau <= 100 000).
    tdev=(
        _row(0.1, 100.0, a=1.0),
        _row(100.0, 500.0, b=0.01),
        _row(500.0, 100_000.0, a=5.0),
    ),
    provenance="segments as given in the issue brief; the same in allantools' ITU mask module "
               "(G.8272 (11/2018) Tables 2 and 4) and in a second public transcription citing "
               "G.8272 (07/2025) Tables 2 and 4 (which also gives the 100 000 s upper end); "
               "class B first appears in the 11/2018 edition, the 01/2015 one has one class",
)

_EPRTC = Mask(
    name="G.8272.1-ePRTC",
    title="Enhanced primary reference time clock (ePRTC), locked mode, wander generation",
    reference="ITU-T G.8272.1/Y.1367.1 (11/2016) Amd. 1 (08/2017) Table 1 (MTIE) and "
              "Table 2 (TDEV)",
    # ITU-T G.8272.1 (2016) Amd. 1 (08/2017), Table 1, MTIE in ns: 4 (0.1 < tau <= 1),
    # 0.11114*tau + 3.89 (1 < tau <= 100), 0.0375e-3*tau + 15 (100 < tau <= 4e5),
    # 30 (tau > 4e5, no upper end). The slope 0.11114 is as transcribed (it makes
    # the row meet the next one at 100 s); the printed table may round it to 0.11.
    mtie=(
        _row(0.1, 1.0, a=4.0),
        _row(1.0, 100.0, a=3.89, b=0.11114),
        _row(100.0, 4e5, a=15.0, b=0.0375e-3),
        _row(4e5, INF, a=30.0),
    ),
    # ITU-T G.8272.1 (2016) Amd. 1 (08/2017), Table 2, TDEV in ns: 1 (0.1 < tau <= 3e4),
    # 3.33333e-5*tau (3e4 < tau <= 3e5), 10 (3e5 < tau <= 1e6).
    tdev=(
        _row(0.1, 3e4, a=1.0),
        _row(3e4, 3e5, b=3.33333e-5),
        _row(3e5, 1e6, a=10.0),
    ),
    provenance="not in the issue brief and the Recommendation text was not found; taken "
               "from two public transcriptions that agree: allantools' ITU mask module "
               "(G.8272.1 (2016) Amd. 1 (08/2017) Table 1 p. 3, Table 2 p. 4) and one "
               "citing G.8272.1 (2024) Amd. 1 (07/2025) Tables 1 and 2 (which also gives "
               "the 1e6 s TDEV upper end); check against the Recommendation",
)

MASKS: dict[str, Mask] = {m.name: m for m in (_G811, _G813, _PRTC_A, _PRTC_B, _EPRTC)}
"""Available masks by contract name, in hierarchy order (see the module docstring)."""

_G812_MISSING = ("the ITU-T G.812 (06/2004) wander-generation tables (clause 8.1 and Annex A) "
                 "could not be found to transcribe; no limit is guessed")

UNAVAILABLE: dict[str, str] = {
    f"G.812-{t}": _G812_MISSING for t in ("I", "II", "III", "IV", "V", "VI")
}
"""Contract names (DESIGN.md) reserved for masks not implemented yet, with the reason."""


def get_mask(name: str) -> Mask:
    """The mask called ``name`` (exact, case-sensitive contract name)."""
    try:
        return MASKS[name]
    except KeyError:
        valid = ", ".join(MASKS)
        if name in UNAVAILABLE:
            raise UnknownMask(f"mask {name!r} is not available ({UNAVAILABLE[name]}); "
                              f"valid names: {valid}") from None
        raise UnknownMask(f"unknown mask {name!r}; valid names: {valid}") from None


def violations(mask: Mask, statistic: Statistic, taus: npt.ArrayLike,
               values: npt.ArrayLike) -> BoolArray:
    """True where ``values`` (seconds, at ``taus``) exceed the mask's limit.

    Where the mask defines no limit (NaN) or the value is NaN, the answer is
    False. ``taus`` and ``values`` must have the same shape.
    """
    t = np.asarray(taus, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape:
        raise ValueError(f"taus and values differ in shape: {t.shape} vs {v.shape}")
    limit = _evaluate(mask.segments(statistic), t)
    return np.asarray(v > limit, dtype=np.bool_)  # comparisons with NaN are False
