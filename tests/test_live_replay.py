"""``LiveSeries.replay`` (a restart's history, in bulk) must leave exactly the state
that ``add`` for each sample leaves: the same grid, gaps, step checks and statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from timemon import live as live_mod
from timemon.live import HISTORY, LiveSeries
from timemon.source import Sample


def _history(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets with white noise, spikes, confirmed steps, a drift, lost replies and an
    outage; times jittered around a 1 s grid."""
    rng = np.random.default_rng(seed)
    noise = rng.choice([1e-8, 1e-7, 3e-6])
    # Half with heavy tails: many offsets near the step threshold, on either side.
    heavy = rng.random() < 0.5
    x = noise * rng.standard_t(1.2, n) if heavy else rng.normal(0.0, noise, n)
    x += 1e-9 * np.arange(n)
    for _ in range(rng.integers(0, 4)):  # steps: a new level from here on
        x[rng.integers(0, n):] += rng.choice([-1, 1]) * rng.uniform(20, 200) * max(noise, 1e-6)
    for _ in range(rng.integers(0, 6)):  # spikes of one or two samples
        at = rng.integers(0, n - 2)
        x[at:at + rng.integers(1, 3)] += rng.uniform(50, 500) * max(noise, 1e-6)
    grid = np.arange(n, dtype=np.int64)
    keep = rng.random(n) > rng.choice([0.0, 0.02, 0.2])  # lost replies
    if rng.random() < 0.5:  # an outage
        start = rng.integers(0, n - 10)
        keep[start:start + rng.integers(5, 400)] = False
    t0 = 1_790_000_000 * 10**9
    t = t0 + grid * 10**9 + rng.integers(0, 40_000_000, n)
    return t[keep], x[keep]


def _with_delays(seed: int, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round-trip delays for ``_history``'s samples, and runs of late replies: 1-5
    samples in a row whose delay grows by 2d and offset by d, as a reply late by 2d
    gives (the offset copied, not changed).  Some delays NaN (a sample without one)."""
    rng = np.random.default_rng(5000 + seed)
    x = x.copy()
    d = 1e-4 + rng.choice([1e-7, 1e-6, 1e-5]) * rng.random(len(x))
    for _ in range(rng.integers(0, 6)):
        at = int(rng.integers(0, len(x) - 5))
        late = rng.uniform(0.0, 1e-3)
        span = slice(at, at + int(rng.integers(1, 6)))
        d[span] += 2 * late
        x[span] += late
    d[rng.random(len(x)) < rng.choice([0.0, 0.01])] = np.nan
    return x, d


def _same_nan(values) -> list:
    """NaN as a string: two NaN objects never compare equal in a list."""
    return [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in values]


def _state(series: LiveSeries) -> tuple:
    return (_same_nan(series._queue), _same_nan(series._history), list(series._delays),
            [(s.t_ns, _same_nan([s.offset, s.delay])) for s in series._candidates],
            series.steps, series._last_t_ns,
            list(series._marks), series._first_marked, series._slot, series._span)


@pytest.mark.parametrize("seed", range(40))
def test_replay_leaves_the_state_add_leaves(seed: int, monkeypatch) -> None:
    rng = np.random.default_rng(1000 + seed)
    # Small chunks too, so chunk edges fall everywhere.
    monkeypatch.setattr(live_mod, "REPLAY_CHUNK", int(rng.choice([7, 64, 4096])))
    t, x = _history(seed, int(rng.integers(50, 3000)))
    # Half the seeds with round-trip delays (NTP), half without (PTP, GNSS).
    x, d = _with_delays(seed, t, x) if seed % 2 else (x, None)
    window = int(rng.choice([64, 256, 1024]))
    one, bulk = LiveSeries(1.0, window), LiveSeries(1.0, window)

    def sample(i: int) -> Sample:
        return Sample(int(t[i]), float(x[i]), None if d is None else float(d[i]))

    # Some live samples first on both: the replay continues an existing state.
    head = min(int(rng.integers(0, 40)), len(t))
    for i in range(head):
        one.add(sample(i))
        bulk.add(sample(i))
    for i in range(head, len(t)):
        one.add(sample(i))
    bulk.replay(t[head:], x[head:], None if d is None else d[head:])
    assert _state(bulk) == _state(one)
    a, b = one.compute(), bulk.compute()
    assert a == b


def test_replay_counts_a_step_in_the_history() -> None:
    t, x = _history(0, 600)
    x = np.random.default_rng(5).normal(0.0, 1e-8, 600)
    x[300:] += 1e-3
    t = 1_790_000_000 * 10**9 + np.arange(600, dtype=np.int64) * 10**9
    series = LiveSeries(1.0, 256)
    series.replay(t, x)
    assert series.steps == 1
    assert len(series._history) == HISTORY


@pytest.mark.parametrize("side", [-1, 1])
@pytest.mark.parametrize("nudge", [1 - 1e-12, 1 + 1e-12])
def test_replay_draws_the_step_line_where_add_does(side: int, nudge: float) -> None:
    """An offset a hair inside or outside the step threshold: one the bulk check lets
    through must be one ``add`` lets through (same median and MAD arithmetic).  A bulk
    candidate goes through ``add`` itself, so only this direction can go wrong."""
    rng = np.random.default_rng(9)
    t = 1_790_000_000 * 10**9 + np.arange(40, dtype=np.int64) * 10**9
    x = rng.normal(0.0, 1e-5, 40)
    probe = LiveSeries(1.0, 256)
    for ti, xi in zip(t[:HISTORY], x[:HISTORY], strict=True):
        probe.add(Sample(int(ti), float(xi)))
    level = probe._level()
    assert level is not None and level[1] > live_mod.MIN_STEP
    x[HISTORY] = level[0] + side * level[1] * nudge
    one, bulk = LiveSeries(1.0, 256), LiveSeries(1.0, 256)
    for ti, xi in zip(t[:HISTORY + 1], x[:HISTORY + 1], strict=True):
        one.add(Sample(int(ti), float(xi)))
    bulk.replay(t[:HISTORY + 1], x[:HISTORY + 1])  # stop at it: is it held as a candidate?
    assert len(one._candidates) == (nudge > 1)
    assert _state(bulk) == _state(one)


def test_replay_with_a_nan_in_the_recent_history_matches_add(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN offset is placed (never a step candidate); while it is among the last
    HISTORY offsets the bulk check must not run (np.sort and sorted() order NaN
    differently).  Review finding; this input gave 0 candidates instead of 2, with the
    16-sample history of the time (kept here: the input is that finding's)."""
    monkeypatch.setattr(live_mod, "HISTORY", 16)
    offsets = [1.3e-05, 4.2e-05, -7.2e-05, -0.000112, -6.2e-05, math.nan, -0.0002, 6.3e-05,
               3.2e-05, -7.1e-05, -6e-06, 3.9e-05, -3e-06, -2.9e-05, -0.000106, -0.000222,
               5.5e-05, -7.9e-05, 1.9e-05, -4.9e-05]
    t = [1_790_000_000 * 10**9 + i * 10**9 for i in range(len(offsets))]
    one, bulk = LiveSeries(1.0), LiveSeries(1.0)
    for ti, o in zip(t, offsets, strict=True):
        one.add(Sample(ti, o))
    bulk.replay(np.array(t, dtype=np.int64), np.array(offsets))
    assert len(one._candidates) == 2
    assert _state(bulk) == _state(one)


def test_after_a_replayed_window_is_folded_the_queue_lets_its_blocks_go() -> None:
    import tracemalloc

    series = LiveSeries(1.0, 32768)  # room for one more than the history
    t0 = 1_800_000_000 * 10**9
    t_ns = t0 + np.arange(16384, dtype=np.int64) * 10**9
    tracemalloc.start()  # before the queue's blocks are allocated, so their release shows
    try:
        series.replay(t_ns, np.random.default_rng(3).normal(0, 1e-6, t_ns.size))
        series.compute()  # drains 16,384 items: the deque keeps its freed blocks
        drained = tracemalloc.get_traced_memory()[0]
        series.add(Sample(int(t_ns[-1]) + 10**9, 0.0))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert drained - after > 4096  # 16 blocks of 64 pointers, ~8 KB, given back
    series.compute()
    assert series.result.samples_in_window == 16385  # the sample added after the renewal
