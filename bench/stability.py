"""Benchmark timemon.analysis against allantools (prints a table; not a test).

Random-walk phase at N = 1e4, 1e5, 1e6, octave taus, every statistic. An
allantools call projected (from its time at a smaller N and the statistic's
complexity) to run past 60 s is skipped and printed as "> 60 s"; the same
rule applies to timemon's Theo1 (O(N^2) over octave taus). Calls under 1 s are
timed best of 3 (the machine may be shared). Peak memory of each timemon call
is measured with tracemalloc, as a multiple of the input array. The table ends
with the issue's targets, each marked met or not met.

    .venv/bin/python bench/stability.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Callable

import allantools as at
import numpy as np
import timemon.analysis as ta

FAST = ["adev", "oadev", "mdev", "tdev", "hdev", "ohdev", "totdev", "mtie", "tierms"]
SIX = ["oadev", "mdev", "tdev", "hdev", "ohdev", "totdev"]
SLOW = ["theo1", "mtotdev", "ttotdev", "htotdev"]
LIMIT = 60.0
CAL_N = 500
REPEAT_BELOW = 1.0  # calls faster than this are timed best of 3 (a shared machine is noisy)
# exponent of N in each implementation's run time with octave taus
AT_EXP = {s: 1.0 for s in FAST} | {s: 2.0 for s in SLOW} | {"mtie": 2.0}
TM_EXP = {s: 1.0 for s in FAST} | {"theo1": 2.0, "mtotdev": 1.2, "ttotdev": 1.2, "htotdev": 1.2}


def timed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    best = time.perf_counter() - t0
    if best < REPEAT_BELOW:
        for _ in range(2):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
    return best


def peak_ratio(f: Callable[[], object], nbytes: int) -> float:
    tracemalloc.start()
    f()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / nbytes


def targets(res: dict[tuple[int, str], tuple[float | None, float | None, float]]) -> list[str]:
    """The issue's Benchmark targets, each with the measured value and met / not met."""
    out = []

    def ratio(n: int, stat: str) -> float | None:
        tm, at_s, _ = res.get((n, stat), (None, None, 0.0))
        return at_s / tm if tm and at_s is not None else None

    def line(text: str, value: str, ok: bool | None) -> None:
        verdict = "not measured" if ok is None else ("met" if ok else "NOT MET")
        out.append(f"  {text:<58} {value:<24} {verdict}")

    r = ratio(100_000, "mtie")
    line("mtie >= 100x allantools at N = 1e5", f"{r:.0f}x" if r else "-", None if r is None else r >= 100)
    r = ratio(1_000_000, "tierms")
    line("tierms >= 10x allantools at N = 1e6", f"{r:.0f}x" if r else "-", None if r is None else r >= 10)
    for stat in SIX:
        r = ratio(1_000_000, stat)
        line(f"{stat} at least as fast as allantools at N = 1e6", f"{r:.2f}x" if r else "-",
             None if r is None else r >= 1.0)
    tm6 = [res.get((1_000_000, s), (None, None, 0.0)) for s in SIX]
    if all(t[0] is not None and t[1] is not None for t in tm6):
        r = sum(t[1] for t in tm6) / sum(t[0] for t in tm6)  # type: ignore[misc]
        line("sum of the six >= 2x allantools at N = 1e6", f"{r:.2f}x", r >= 2.0)
    else:
        line("sum of the six >= 2x allantools at N = 1e6", "-", None)
    nine = [res.get((1_000_000, s), (None, None, 0.0))[0] for s in FAST]
    if all(t is not None for t in nine):
        tot = sum(nine)  # type: ignore[arg-type]
        line("all nine fast statistics < 2 s at N = 1e6", f"{tot:.3f} s", tot < 2.0)
    else:
        line("all nine fast statistics < 2 s at N = 1e6", "-", None)
    for stat in SLOW:
        tm = res.get((10_000, stat), (None, None, 0.0))[0]
        line(f"{stat} < 1 s at N = 1e4", f"{tm:.3f} s" if tm is not None else "-",
             None if tm is None else tm < 1.0)
    mems = [(v[2], k) for k, v in res.items() if v[2] == v[2]]
    if mems:
        worst, (n, stat) = max(mems)
        line("peak memory < 20x the input array (worst call)", f"{worst:.1f}x ({stat}, N={n})",
             worst < 20.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(42)
    last_at: dict[str, tuple[int, float]] = {}
    last_tm: dict[str, tuple[int, float]] = {}
    res: dict[tuple[int, str], tuple[float | None, float | None, float]] = {}
    print(f"{'N':>8} {'stat':>8} {'timemon s':>10} {'allantools s':>13} {'ratio':>8} {'peak mem':>9}")
    for n in sizes:
        x = np.cumsum(rng.standard_normal(n)) * 1e-9  # random-walk phase
        sum_tm = {"nine": 0.0, "six": 0.0}
        sum_at = {"six": 0.0}
        for stat in FAST + SLOW:
            ours = ta.STATISTICS[stat]
            theirs = getattr(at, stat)

            def run_tm(f=ours, x=x) -> object:
                return f(x, 1.0, "phase", "octave")

            def run_at(f=theirs, x=x) -> object:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return f(x, rate=1.0, data_type="phase", taus="octave")

            if stat in SLOW and stat not in last_at:
                # calibrate allantools' O(N^2) statistics on a short series first
                xs = x[:CAL_N]
                last_at[stat] = (CAL_N, timed(lambda f=theirs, xs=xs: f(xs, taus="octave")))

            tm_s: float | None = None
            if stat in last_tm:
                n0, t0 = last_tm[stat]
                tm_s = None if t0 * (n / n0) ** TM_EXP[stat] > LIMIT else timed(run_tm)
            else:
                tm_s = timed(run_tm)
            if tm_s is not None:
                last_tm[stat] = (n, tm_s)
            at_s: float | None = None
            if stat in last_at:
                n0, t0 = last_at[stat]
                projected = t0 * (n / n0) ** AT_EXP[stat]
                if projected <= LIMIT:
                    at_s = timed(run_at)
            else:
                at_s = timed(run_at)
            if at_s is not None:
                last_at[stat] = (n, at_s)
            mem = peak_ratio(run_tm, x.nbytes) if tm_s is not None and tm_s < 5 else float("nan")
            res[(n, stat)] = (tm_s, at_s, mem)
            if stat in FAST and tm_s is not None:
                sum_tm["nine"] += tm_s
            if stat in SIX and tm_s is not None:
                sum_tm["six"] += tm_s
                sum_at["six"] += at_s if at_s is not None else float("nan")
            tm_txt = f"{tm_s:10.4f}" if tm_s is not None else f"{'> 60 s':>10}"
            at_txt = f"{at_s:13.4f}" if at_s is not None else f"{'> 60 s':>13}"
            ratio = f"{at_s / tm_s:7.1f}x" if at_s is not None and tm_s else f"{'-':>8}"
            mem_txt = f"{mem:8.1f}x" if mem == mem else f"{'-':>9}"
            print(f"{n:>8} {stat:>8} {tm_txt} {at_txt} {ratio} {mem_txt}", flush=True)
        six_ratio = sum_at["six"] / sum_tm["six"] if sum_tm["six"] else float("nan")
        print(f"{n:>8} all nine fast statistics (timemon): {sum_tm['nine']:.3f} s; "
              f"oadev..totdev sum: timemon {sum_tm['six']:.3f} s, allantools "
              f"{sum_at['six']:.3f} s, ratio {six_ratio:.1f}x", flush=True)
    print("\nIssue 3 benchmark targets (one core):")
    for row in targets(res):
        print(row)


if __name__ == "__main__":
    main()
