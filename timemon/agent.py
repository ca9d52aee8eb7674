"""The agent: runs every configured source on one asyncio loop, stores what they
accept, serves metrics, and stops cleanly on SIGTERM (SIGHUP reloads the config)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from timemon import heap, sdnotify
from timemon.analysis.streaming import DEFAULT_WINDOW
from timemon.chain import load_private_key
from timemon.config import AgentConfig, ConfigError, SourceConfig, load_config
from timemon.crosscheck import CrossChecker
from timemon.exporter import AgentState
from timemon.http_server import MetricsServer
from timemon.kinds import KINDS
from timemon.live import LiveSeries
from timemon.source import Sample, Source
from timemon.store import SampleStore
from timemon.webconfig import WebConfig, WebConfigError, load_web_config, web_config_path

log = logging.getLogger("timemon.agent")

LAG_CHECK_SECONDS = 0.5
STATS_PERIOD = 1.0  # seconds between checks for live statistics whose fold is due
# Seconds of folding per check at most: sources started together come due together (at
# 1,000 sources a burst of ~2 s), and a long burst holding the GIL makes polls late.
# What is left waits for the next check, taken up where this one stopped.
STATS_BUDGET = 0.2
# Longest a fold or a replay waits for a running scrape to finish (AgentState.no_scrape):
# about one scrape at 1,000 sources; back-to-back scrapes only slow them down.
SCRAPE_YIELD_MAX = 0.25
# Seconds a cancelled source's task may take to end.  A probe that ignored the
# cancellation (timemon.probes: asyncio.wait_for on Python 3.11 did) would otherwise
# hold up a SIGHUP reload, or the shutdown before the store's queued samples are written.
STOP_GRACE = 5.0


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one.

    Each NTP source keeps its client socket open, so 1,000 sources alone use up the
    soft limit of 1,024 that systemd (and most shells) start a service with; the hard
    limit is what an operator allows.  Nothing here uses select(2), which the low soft
    limit protects.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):  # e.g. above fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Agent:
    def __init__(self, config: AgentConfig, listen: tuple[str, int] | None = None,
                 web: WebConfig | None = None, web_override: str | None = None) -> None:
        self.config = config
        self.web = web  # TLS and basic auth of the metrics endpoint
        self.web_override = web_override  # --web-config: wins over [agent] web_config
        self.listen = listen or config.listen
        self.state = AgentState()
        self.store = (SampleStore(config.store, config.retention,
                                  signing_key=(load_private_key(config.signing_key)
                                               if config.signing_key else None))
                      if config.store else None)
        if self.store is not None:
            store = self.store
            self.state.chain_collector = store.collect_chain
            self.state.store_errors = lambda: store.errors
            self.state.store_backlog = lambda: store.backlog
        self.sources: dict[str, tuple[SourceConfig, Source, asyncio.Task[None]]] = {}
        self._noted: dict[str, dict[str, str]] = {}  # reference info last written per source
        # The reference_info dict each source gave last: a kind that keeps its dict while
        # nothing changed (NTP) costs one identity check a sample.
        self._noted_info: dict[str, dict[str, str]] = {}
        # Sources whose stored history is being replayed into their statistics, and the
        # samples they took meanwhile.
        self._restoring: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, list[Sample]] = {}
        # The start-up and SIGHUP reloads in progress (reloads may interleave): no heap.settle
        # until they are done (a replay finishing meanwhile would settle each time).
        self._building = 0
        self.server: MetricsServer | None = None
        # One thread for numpy work, so the event loop never waits on it.
        self._stats_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats")
        self._stats_cursor = 0  # where the next statistics pass starts (round robin)
        # History replays after a restart, one at a time: they hold the GIL anyway, and
        # each extra thread's malloc arena keeps ~60 KB per source of freed memory.
        self._restore_executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="restore")
        self._stop = asyncio.Event()

    # -- samples ---------------------------------------------------------------

    def record(self, source: Source, sample: Sample) -> None:
        if self.store is not None:
            self.store.append(source.name, source.kind, sample)
            info = source.reference_info()
            if self._noted_info.get(source.name) is not info:
                self._note(source, info)
        live = source.live
        if live is not None:
            live.add(sample)
        elif (held := self._held.get(source.name)) is not None:
            held.append(sample)  # the history is still being replayed: these follow it

    def _note(self, source: Source, info: dict[str, str]) -> None:
        """Write to the store what changed in a source's reference info."""
        assert self.store is not None
        self._noted_info[source.name] = info
        noted = self._noted.setdefault(source.name, {})
        for key, value in info.items():
            if noted.get(key) != value:
                noted[key] = value
                self.store.note(source.name, source.kind, key, value)

    # -- sources ---------------------------------------------------------------

    async def _start_source(self, sc: SourceConfig) -> None:
        source = KINDS[sc.kind].build(sc)
        source.sink = self.record
        if source.is_reference:
            window = sc.options.get("stability_window", DEFAULT_WINDOW)
            live = LiveSeries(sc.interval, window, sc.options.get("max_tau"),
                              sc.options.get("masks", ()))
            if self.store is None:
                source.live = live
            else:
                # The last stored sample now (one row), for status and staleness checks.
                source.restore(await asyncio.get_running_loop().run_in_executor(
                    None, self.store.load_recent, sc.name, sc.kind, 1))
                # The window's worth of history, so statistics continue across a restart.
                # Replaying 16,384 samples takes ~0.1 s, so at 1,000 sources it runs in
                # the background while the source already polls; its new samples wait
                # in _held and follow the history (see _restore).
                self._held[sc.name] = []
                self._restoring[sc.name] = asyncio.create_task(
                    self._restore(source, live, window), name=f"restore:{sc.name}")
        task = asyncio.create_task(self._supervise(source), name=f"source:{sc.name}")
        self.sources[sc.name] = (sc, source, task)
        self._publish()

    async def _restore(self, source: Source, live: LiveSeries, window: int) -> None:
        assert self.store is not None
        recent: list[Sample] = []
        try:
            # Off the loop; ``live`` is not attached yet, so no other thread touches it.
            recent = await asyncio.get_running_loop().run_in_executor(
                self._restore_executor, _replay_history, self.store, source, live, window,
                self.state)
        except Exception:  # noqa: BLE001 - without history the statistics start afresh
            log.exception("source %s: history not restored", source.name)
        finally:
            self._restoring.pop(source.name, None)
        source.restore(recent)
        for sample in _not_replayed(self._held.pop(source.name, []), recent):
            live.add(sample)
        source.live = live
        if not self._restoring and not self._building:
            heap.settle()  # the last replay: the replay's garbage goes back to the kernel

    async def _stop_source(self, name: str) -> None:
        _sc, source, task = self.sources.pop(name)
        restoring = self._restoring.pop(name, None)
        if restoring is not None:
            restoring.cancel()
        self._held.pop(name, None)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
        if not done:
            log.error("source %s did not stop within %g s of its cancellation; going on "
                      "without it (a bug: please report)", name, STOP_GRACE)
        await source.close()
        self._publish()

    def _publish(self) -> None:
        # A new tuple each time: the exporter thread iterates a stable snapshot.
        self.state.sources = tuple(src for _sc, src, _t in self.sources.values())

    @staticmethod
    async def _supervise(source: Source) -> None:
        """Run a source; a bug in one probe is logged and retried, never fatal to others."""
        while True:
            try:
                await source.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - isolate one source's failure
                log.exception("source %s (%s) failed; restarting it", source.name, source.kind)
                source.count_error("internal", f"{type(exc).__name__}: {exc}")
                source.set_up(False)
                await asyncio.sleep(max(source.interval, 1.0))

    async def reload(self) -> None:
        if not self.config.path:
            log.info("SIGHUP: running without a config file, nothing to reload")
            return
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running config: %s", exc)
            return
        wanted = {sc.name: sc for sc in new.sources}
        # Dropped sources' cycles must stay collectable: no freeze until the reload is
        # done (a replay finishing meanwhile would freeze a source being stopped).
        self._building += 1
        heap.thaw()
        try:
            for name, (sc, _src, _task) in list(self.sources.items()):
                if wanted.get(name) != sc:
                    await self._stop_source(name)
            for name, sc in wanted.items():
                if name not in self.sources:
                    await self._start_source(sc)
        finally:
            self._building -= 1
        if not self._restoring and not self._building:
            heap.settle()
        if new.listen != self.config.listen or new.store != self.config.store:
            log.warning("SIGHUP: 'listen' and 'store' changes take effect at restart")
        self._reload_web(new)
        self.config = new
        log.info("SIGHUP: config reloaded, %d sources", len(self.sources))

    def _reload_web(self, config: AgentConfig) -> None:
        """Re-read the web config (new certificates, users): the exporter-toolkit reads
        its file per request, timemon on SIGHUP.  A broken file keeps the running one."""
        path = web_config_path(self.web_override, config.web_config, config.path)
        if path is None and self.web is None:
            return
        try:
            web = load_web_config(path) if path else None
            if self.server is not None:
                self.server.set_web(web)
        except WebConfigError as exc:
            log.error("SIGHUP: keeping the running web config: %s", exc)
            return
        self.web = web
        log.info("SIGHUP: web config %s", f"reloaded from {path}" if path else "removed")

    # -- main ----------------------------------------------------------------------

    async def _watch_loop_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_CHECK_SECONDS)
            self.state.event_loop_lag = max(0.0, time.monotonic() - before - LAG_CHECK_SECONDS)

    def _compute_statistics(self) -> None:
        """On the statistics thread: fold new samples into the estimators of every
        source whose batch is due (see ``timemon.live``), for STATS_BUDGET seconds at
        most, waiting included; the next pass goes on from where this one stopped."""
        now = time.monotonic()
        deadline = now + STATS_BUDGET
        sources = self.state.sources
        count = len(sources)
        for i in range(count):
            source = sources[(self._stats_cursor + i) % count]
            live = source.live
            if live is None or not live.fold_due(now):
                continue
            self.state.no_scrape.wait(min(SCRAPE_YIELD_MAX,
                                          max(0.0, deadline - time.monotonic())))
            try:
                live.compute_if_due(now)
                source.live_fragment(live.result)
            except Exception:  # noqa: BLE001 - one source's bad data must not stop others
                log.exception("statistics of source %s failed", source.name)
            if time.monotonic() > deadline:
                self._stats_cursor = (self._stats_cursor + i + 1) % count
                return

    async def _run_statistics(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(self._stats_executor, self._compute_statistics)
            await asyncio.sleep(STATS_PERIOD)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, ready: Callable[[int], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        raise_open_file_limit()
        heap.fix_mmap_threshold()  # before the sources' buffers are allocated
        self.state.start_time = time.time()
        if self.store is not None:
            self.store.start()
        self.server = MetricsServer(self.state, *self.listen, web=self.web)
        self.server.start()
        log.info("serving metrics on %s://%s:%d/metrics", self.server.scheme, self.listen[0],
                 self.server.port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        lag_task = asyncio.create_task(self._watch_loop_lag())
        self._building += 1
        try:
            for sc in self.config.sources:
                await self._start_source(sc)
        finally:
            self._building -= 1
        if not self._restoring:
            heap.settle()  # without a store (or history) the long-lived state is built now
        stats_task = asyncio.create_task(self._run_statistics())
        crosscheck_task = asyncio.create_task(CrossChecker(self.state).run())
        # systemd Type=notify: READY=1 now, WATCHDOG=1 from this loop (timemon.sdnotify).
        notifier = sdnotify.start_notifier(f"{len(self.sources)} sources")
        if ready is not None:
            ready(self.server.port)
        try:
            await self._stop.wait()
        finally:
            log.info("stopping: %d sources", len(self.sources))
            lag_task.cancel()
            stats_task.cancel()
            crosscheck_task.cancel()
            await sdnotify.stop_notifier(notifier)
            for name in list(self.sources):
                await self._stop_source(name)
            if self.store is not None:
                # In-flight and queued writes finish before we exit (SIGTERM contract).
                await loop.run_in_executor(None, self.store.close)
            self.server.stop()
            self._stats_executor.shutdown(wait=True)
            self._restore_executor.shutdown(wait=True, cancel_futures=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def _not_replayed(held: list[Sample], replayed: list[Sample]) -> list[Sample]:
    """The samples a source took while its history was replayed that the replay did
    not already hold.  The replay reads the store after the first of them are written
    (at 1,000 sources polled every second, about 50 a source), and placed twice each
    would take a slot of its own and shift the grid: bench/scale.py's median measured
    sample interval read 0.9968 s, below the 1 s that rate safety guarantees (1.0000 s
    once placed once).  Found by the last replayed sample's time and offset, not by
    time alone: a clock stepped back makes a new sample's time older."""
    if replayed:
        last = replayed[-1]
        for i in range(len(held) - 1, -1, -1):
            if held[i].t_ns == last.t_ns and held[i].offset == last.offset:
                return held[i + 1:]
    return held


def _replay_history(store: SampleStore, source: Source, live: LiveSeries,
                    window: int, state: AgentState) -> list[Sample]:
    """The last ``window`` stored samples of ``source``, replayed into ``live`` in bulk
    and folded in; gives the last one (for ``Source.restore``)."""
    state.no_scrape.wait(SCRAPE_YIELD_MAX)
    t_ns, offsets, delays = store.load_recent_arrays(source.name, source.kind, window)
    if not len(offsets):
        return []
    live.replay(t_ns, offsets, delays)
    live.compute()
    source.live_fragment(live.result)
    return [Sample(int(t_ns[-1]), float(offsets[-1]))]
