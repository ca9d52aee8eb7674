"""Frequency-stability statistics (importable as timemon.analysis).

Every statistic has allantools' call shape
``f(data, rate=1.0, data_type="phase", taus="octave") -> (taus, devs, errs, ns)``;
:func:`stability_table` adds noise type, EDF and a 68.3 % confidence interval
per point.
"""

from collections.abc import Callable

from .confidence import StabilityTable, stability_table
from .stability import adev, hdev, mdev, oadev, ohdev, tdev, totdev
from .tie import mtie, tierms
from .total import htotdev, mtotdev, theo1, ttotdev

STATISTICS: dict[str, Callable[..., tuple]] = {
    "adev": adev,
    "oadev": oadev,
    "mdev": mdev,
    "tdev": tdev,
    "hdev": hdev,
    "ohdev": ohdev,
    "totdev": totdev,
    "mtie": mtie,
    "tierms": tierms,
    "theo1": theo1,
    "mtotdev": mtotdev,
    "ttotdev": ttotdev,
    "htotdev": htotdev,
}

__all__ = [
    "STATISTICS",
    "StabilityTable",
    "adev",
    "hdev",
    "htotdev",
    "mdev",
    "mtie",
    "mtotdev",
    "oadev",
    "ohdev",
    "stability_table",
    "tdev",
    "theo1",
    "tierms",
    "totdev",
    "ttotdev",
]
