#!/usr/bin/env python3
"""Per-sample cost of the agent's live statistics (OADEV, MDEV, TDEV, MTIE together).

Feeds random-walk phase into ``StreamingStability`` one sample at a time and
folds it in batches of B samples (the agent folds timemon.live.FOLD_BATCH = 128
slots at a time, or what waited FOLD_MAX_AGE: B = 128 at a 1 s interval, about 8
at 16 s), then reports µs per sample with all four statistics
at the default window (13 octave taus) and at 16 taus, memory per source at a
full window, and allantools' ``oadev_realtime`` (OADEV alone) as the anchor,
measured in the same run on the same data.  Prints a table; asserts nothing.

    .venv/bin/python bench/live_stats.py
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np
from allantools.realtime import oadev_realtime
from timemon.analysis.streaming import DEFAULT_WINDOW, StreamingStability

N = 40_000


def phase(n: int) -> list[float]:
    rng = np.random.default_rng(1)
    return list(np.cumsum(rng.normal(0.0, 1e-9, n)))


def timemon_cost(x: list[float], window: int, batch: int) -> tuple[float, int]:
    stream = StreamingStability(1.0, window)
    # Fill the window first: the steady state (eviction + addition) is what counts.
    for v in x[:window]:
        stream.append(v)
    stream.update()
    rest = x[window:window + N]
    started = time.perf_counter()
    for i, v in enumerate(rest, start=1):
        stream.append(v)
        if i % batch == 0:
            stream.update()
            stream.points()  # the agent publishes after every fold
    stream.update()
    stream.points()
    elapsed = time.perf_counter() - started
    return elapsed / len(rest) * 1e6, len(stream.ms)


def allantools_cost(x: list[float], taus: int) -> float:
    dev = oadev_realtime(afs=[2**k for k in range(taus)], tau0=1.0, auto_afs=False)
    n = min(N, 20_000)
    started = time.perf_counter()
    for v in x[:n]:
        dev.add_phase(v)
    return (time.perf_counter() - started) / n * 1e6


def memory_per_source(window: int) -> int:
    tracemalloc.start()
    stream = StreamingStability(1.0, window)
    for v in phase(window):
        stream.append(v)
    stream.update()
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size


def main() -> int:
    big = 1 << 17  # 131072 samples: 16 octave taus (m up to 32768)
    x = phase(big + N)
    anchor11 = allantools_cost(x, 11)
    anchor16 = allantools_cost(x, 16)
    print(f"Live statistics: µs per sample, {N} samples after a full window, one core")
    print(f"{'estimator':46} {'taus':>4} {'batch':>5} {'µs/sample':>10} {'vs anchor':>10}")
    print(f"{'allantools oadev_realtime (OADEV only)':46} {11:4d} {1:5d} {anchor11:10.2f} "
          f"{1.0:10.2f}")
    print(f"{'allantools oadev_realtime (OADEV only)':46} {16:4d} {1:5d} {anchor16:10.2f} "
          f"{1.0:10.2f}")
    for window in (DEFAULT_WINDOW, big):
        for batch in (1, 2, 16, 64, 128, 256) if window == DEFAULT_WINDOW else (16, 64, 128, 256):
            cost, taus = timemon_cost(x, window, batch)
            anchor = anchor16 if taus >= 16 else anchor11
            label = f"timemon OADEV+MDEV+TDEV+MTIE, window {window}"
            print(f"{label:46} {taus:4d} {batch:5d} {cost:10.2f} {anchor / cost:9.2f}x")
    for window in (DEFAULT_WINDOW, big):
        print(f"memory per source at a full window of {window}: "
              f"{memory_per_source(window) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
