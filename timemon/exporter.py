"""The Prometheus side: every family the agent exports, built per scrape.

``collect_families()`` builds fresh metric families from what the sources and the
store hold right now; it does no I/O and takes no lock a probe could hold, so a slow
scrape never delays a measurement (node_exporter's collector pattern).  ``/metrics``
renders them straight to text (``timemon.http_server``); ``make_registry`` offers the
same families to prometheus_client (``generate_latest``).
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.registry import Collector

from timemon import __version__
from timemon.crosscheck import collect as collect_crosscheck
from timemon.families import Families
from timemon.source import Source, collect_sources


class AgentState:
    """What the exporter reads: filled in by the agent, read by scrapes."""

    def __init__(self) -> None:
        self.sources: Sequence[Source] = ()
        self.store_errors: Callable[[], int] = lambda: 0
        self.store_backlog: Callable[[], int] = lambda: 0
        self.event_loop_lag: float = 0.0
        # Adds timemon_store_checkpoint_info from the store's in-memory chain heads.
        self.chain_collector: Callable[[Families], None] | None = None
        self.start_time: float = 0.0
        self.crosscheck: Any = None  # timemon.crosscheck.CrossCheck, set by its task
        # Set while no scrape runs.  Background numpy work waits on it (briefly) before
        # each statistics fold and history replay: with three threads wanting the GIL a
        # scrape got a third of it and took 3x its CPU time (p99 0.5 s at 1,000 sources).
        self.no_scrape = threading.Event()
        self.no_scrape.set()
        self._scrapes = 0
        self._scrapes_lock = threading.Lock()

    @contextlib.contextmanager
    def scraping(self) -> Iterator[None]:
        """Marks a scrape in progress (``no_scrape`` is clear until the last one ends)."""
        with self._scrapes_lock:
            self._scrapes += 1
            self.no_scrape.clear()
        try:
            yield
        finally:
            with self._scrapes_lock:
                self._scrapes -= 1
                if not self._scrapes:
                    self.no_scrape.set()


def collect_families(state: AgentState, text: bool = False) -> Families:
    """Every family the agent exports, from what the sources and the store hold now;
    ``text``: rendered as added, for ``/metrics`` (``Families``)."""
    out = Families(text)
    out.info("timemon_build", "Version of the timemon agent.", (), (),
             {"version": __version__, "python": platform.python_version()})
    out.counter("timemon_store_errors", "Failed writes to the sample store (retried).",
                (), (), state.store_errors())
    out.gauge("timemon_store_backlog_samples",
              "Accepted samples waiting in memory for the store.", (), (),
              state.store_backlog())
    out.gauge("timemon_event_loop_lag_seconds",
              "How late the agent's event loop ran a timer at its last check.", (), (),
              state.event_loop_lag)
    if state.start_time:
        out.gauge("timemon_start_time_seconds", "Unix time the agent started.", (), (),
                  state.start_time)
    if state.chain_collector is not None:
        state.chain_collector(out)
    collect_sources(out, tuple(state.sources))
    collect_crosscheck(out, state.crosscheck)
    return out


class TimemonCollector(Collector):
    """The same families for a prometheus_client registry (``generate_latest``)."""

    def __init__(self, state: AgentState) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        yield from collect_families(self.state)


def make_registry(state: AgentState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TimemonCollector(state))
    return registry
