"""A per-scrape builder of Prometheus metric families.

Each source adds its samples by family name; families with the same name from
several sources are merged into one, which Prometheus requires.  Built fresh
on every scrape from snapshots, so nothing here is shared between threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample as PromSample

SOURCE_LABELS = ("source", "kind")


class Families:
    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(
        self, name: str, doc: str, labels: Sequence[str], values: Sequence[str], value: float
    ) -> None:
        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            self._families[name] = family
        family.add_metric(list(values), value)

    def counter(
        self, name: str, doc: str, labels: Sequence[str], values: Sequence[str], value: float
    ) -> None:
        """``name`` without the ``_total`` suffix; the client library appends it."""
        family = self._families.get(name)
        if family is None:
            family = CounterMetricFamily(name, doc, labels=list(labels))
            self._families[name] = family
        family.add_metric(list(values), value)

    def info(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        values: Sequence[str],
        info: dict[str, str],
    ) -> None:
        """``name`` without the ``_info`` suffix."""
        family = self._families.get(name)
        if family is None:
            family = InfoMetricFamily(name, doc, labels=list(labels))
            self._families[name] = family
        family.add_metric(list(values), info)

    def gauge_with(self, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        """A gauge sample whose label set may be wider than the family's (e.g. GNSS's
        ``quality`` on ``timemon_offset_seconds``); the exposition format allows it."""
        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            self._families[name] = family
        family.samples.append(PromSample(name, dict(labels), value))

    def declare_gauge(self, name: str, doc: str, labels: Sequence[str]) -> None:
        """Make a family appear (with HELP/TYPE) even when it has no samples yet."""
        if name not in self._families:
            self._families[name] = GaugeMetricFamily(name, doc, labels=list(labels))

    def declare_counter(self, name: str, doc: str, labels: Sequence[str]) -> None:
        if name not in self._families:
            self._families[name] = CounterMetricFamily(name, doc, labels=list(labels))

    def __iter__(self) -> Iterable[Metric]:
        return iter(self._families.values())
