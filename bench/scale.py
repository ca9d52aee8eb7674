"""Scale benchmark: one agent polling N NTP responders on loopback.

    .venv/bin/python bench/scale.py [--sources 1000] [--seconds 60] [--interval 1]

Starts ``python -m timemon.simulator --count N`` (one process, N responders on
consecutive ports) and ``timemon agent`` (a subprocess, lab interval, a store in
a temporary directory), waits until every source has a sample, then measures
for ``--seconds`` while a client scrapes ``/metrics`` once a second.  Measuring
starts ``--settle`` seconds after the agent (default 40 s): a young stability window
folds every few seconds so that its first values come quickly, a start-up cost that
the first half minute would otherwise show as if it were the steady state.

Printed:
  * agent CPU as % of one core: utime + stime of all its threads from
    /proc/PID/stat over the measurement, divided by the wall time, and the two apart
    (user: the agent's own code, Python's, SQLite's and numpy's; system: the kernel's
    work for its sockets and files);
  * agent RSS (VmRSS, at the end);
  * samples per second: the increase of sum(timemon_samples_total) between the
    first and last scrape, divided by the time between them;
  * measured sample interval: the median over the sources of
    timemon_sample_interval_seconds at the last scrape (how much later than the
    interval the polls come, which the live statistics correct for);
  * late polls: consecutive samples of one source (from the store, inside the
    measurement window) more than 1.5 intervals apart; missed polls: the
    expected number of samples (window / interval per source) minus those stored;
  * scrape latency p50/p90/p99 (request to last byte, nearest rank: of the 61 scrapes
    of a 60 s run the p99 is the slowest one, so p90 is shown too, as steadier) and
    bytes per scrape; for the three slowest, the agent's CPU time while each ran and the
    time the host stole from this VM's CPUs meanwhile (/proc/stat, 10 ms ticks): a slow
    scrape that the agent did not spend in its own work waited for a CPU;
  * the time stolen by the host over the measurement, as a share of the machine's CPU
    time: on a shared VM, how contended the run was;
  * where the processes ran: with two CPUs or more, the responders get one CPU of
    their own and the agent the others (``--shared-cpus``: no placement).  The
    responders stand in for servers on other hosts: sharing the agent's CPU, they
    preempted its event loop ~190 times a second (involuntary context switches, 20-30
    placed) on the 2-vCPU reference VM, and its CPU time grew with the cache refills:
    25.0 and 25.3 % of a core shared, 24.4, 24.2 and 24.7 % placed (1,000 sources,
    60 s runs alternating, one version of the agent).  On a faster day with full
    windows (--fill-store): 13.7, 15.8 and 16.0 % placed, scrape p99 51-79 ms; 17.8 %
    shared, p99 99.3 ms;
  * memory per source at a full stability window, MEASURED IN-PROCESS AND
    EXTRAPOLATED (not by filling a store): ``--window-sources`` LiveSeries are
    filled with a full window (DEFAULT_WINDOW samples) and folded, the RSS
    increase is divided by their number and multiplied by N.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
VENV_BIN = Path(sys.executable).parent
_SAMPLES = re.compile(rb"^timemon_samples_total\{[^}]*\} ([0-9.e+]+)$", re.M)
_SPACING = re.compile(rb"^timemon_sample_interval_seconds\{[^}]*\} ([0-9.e+]+)$", re.M)


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of all the process's threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime (fields 14, 15)


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) jiffies of all CPUs, from /proc/stat; stolen: time the
    host ran something else while this VM's CPUs were ready to run (its 8th field)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values), values[7]


def free_port_block(count: int) -> int:
    """A base port with ``count`` consecutive free UDP ports."""
    for base in range(20000, 60000 - count, 1500):
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no block of free UDP ports")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read()
    return time.perf_counter() - started, body


def samples_total(body: bytes) -> tuple[float, int]:
    values = [float(v) for v in _SAMPLES.findall(body)]
    return sum(values), sum(1 for v in values if v > 0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def cpu_placement(shared: bool) -> tuple[set[int] | None, set[int] | None]:
    """(the responders' CPUs, the agent's CPUs): the last CPU this process may use,
    and the rest; (None, None) with ``shared`` or a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if shared or len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """What a child runs before ``exec``: the file limit, and its CPUs (inherited by
    every thread it starts)."""
    def setup() -> None:
        raise_fd_limit()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    return setup


def window_memory_per_source(n: int, interval: float) -> tuple[float, int]:
    """Bytes of RSS per source with a full stability window, and the window length."""
    import numpy as np
    from timemon.analysis.streaming import DEFAULT_WINDOW

    from timemon.live import LiveSeries
    from timemon.source import Sample

    rng = np.random.default_rng(1)
    offsets = rng.normal(0.0, 1e-5, DEFAULT_WINDOW).tolist()
    step = int(interval * 1e9)
    before = rss_bytes(os.getpid())
    keep = []
    t0 = time.clock_gettime_ns(time.CLOCK_REALTIME) - DEFAULT_WINDOW * step
    for i in range(n):
        live = LiveSeries(interval, DEFAULT_WINDOW, None, ())
        for k, x in enumerate(offsets):
            live.add(Sample(t0 + k * step + (i % 7) * 1000, x, 1e-4))
        live.compute_if_due(time.monotonic() + 3600)
        keep.append(live)
    after = rss_bytes(os.getpid())
    return (after - before) / n, DEFAULT_WINDOW


def fill_store(path: Path, n: int, window: int, interval: float) -> float:
    """A store holding ``window`` samples (white phase noise, 10 µs) for each of the ``n``
    sources, ending now, so the agent starts with every stability window full.  The
    hash-chain column holds filler (``timemon verify`` would reject it; the agent only
    reads the samples back).  Returns the seconds it took."""
    import numpy as np

    from timemon.store import open_database

    started = time.monotonic()
    rng = np.random.default_rng(7)
    step = int(interval * 1e9)
    end = time.clock_gettime_ns(time.CLOCK_REALTIME) - step
    times = (end - step * np.arange(window, dtype=np.int64)[::-1]).tolist()
    seqs = list(range(1, window + 1))
    filler = bytes(32)
    open_database(str(path)).close()  # the schema, as the agent makes it
    db = sqlite3.connect(path)
    # One bulk load with no journal: a crash here only loses the benchmark's input.
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    with db:
        for i in range(n):
            sid = db.execute("INSERT INTO sources (name, kind) VALUES (?, 'ntp')",
                             (f"sim{i:04d}",)).lastrowid
            offsets = rng.normal(0.0, 1e-5, window).tolist()
            db.executemany("INSERT INTO samples (source_id, t_ns, offset, delay, seq, hash) "
                           "VALUES (?, ?, ?, 1e-4, ?, ?)",
                           zip([sid] * window, times, offsets, seqs, [filler] * window,
                               strict=True))
    db.close()
    return time.monotonic() - started


def full_windows(body: bytes, window: int) -> int:
    """Sources exporting ADEV at the largest octave tau: their window is back in full."""
    from timemon.analysis.streaming import octave_ms

    tau = octave_ms(window)[-1]
    pattern = rf'^timemon_allan_deviation\{{[^}}]*tau="{tau}"\}} '.encode()
    return len(re.findall(pattern, body, re.M))


def write_config(path: Path, store: Path, base: int, count: int, interval: float,
                 with_store: bool = True) -> None:
    parts = [f'[agent]\nstore = "{store if with_store else ""}"\nlog_level = "warning"\n']
    for i in range(count):
        parts.append(f'[[source]]\nname = "sim{i:04d}"\nkind = "ntp"\n'
                     f'address = "127.0.0.1:{base + i}"\ninterval = {interval}\nlab = true\n'
                     f'timeout = 0.5\n')
    path.write_text("\n".join(parts))


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window-sources", type=int, default=20,
                        help="sources filled to a full window for the memory extrapolation")
    parser.add_argument("--no-store", action="store_true",
                        help="run the agent without a store (isolates the store's cost)")
    parser.add_argument("--scrape-every", type=float, default=1.0,
                        help="seconds between scrapes (large: isolates the scrape's cost)")
    parser.add_argument("--settle", type=float, default=40.0,
                        help="seconds from the agent's start before measuring: past the "
                             "young-window fold cadence (timemon.live.YOUNG_WINDOW samples)")
    parser.add_argument("--fill-store", action="store_true",
                        help="start from a generated store with every source's stability "
                             "window full, and measure RSS once all are restored (slow)")
    parser.add_argument("--shared-cpus", action="store_true",
                        help="let the responders and the agent run on any CPU (by default "
                             "the responders get a CPU of their own, as remote servers would)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the agent with py-spy (collapsed stacks) during the run")
    args = parser.parse_args()
    raise_fd_limit()
    n = args.sources
    base = free_port_block(n)
    http_port = free_tcp_port()
    rows: list[tuple[str, str]] = []
    sim_cpus, agent_cpus = cpu_placement(args.shared_cpus)
    with tempfile.TemporaryDirectory(prefix="timemon-scale-") as tmp:
        config, store = Path(tmp) / "scale.toml", Path(tmp) / "samples.db"
        write_config(config, store, base, n, args.interval, not args.no_store)
        fill_seconds = None
        if args.fill_store:
            from timemon.analysis.streaming import DEFAULT_WINDOW

            fill_seconds = fill_store(store, n, DEFAULT_WINDOW, args.interval)
        sim = subprocess.Popen([sys.executable, "-m", "timemon.simulator", "--count", str(n),
                                "--port", str(base)], preexec_fn=child_setup(sim_cpus))
        agent = None
        spy = None
        try:
            time.sleep(1.0 + n / 2000)
            if sim.poll() is not None:
                raise SystemExit("the simulator exited")
            agent = subprocess.Popen([str(VENV_BIN / "timemon"), "agent", "--config",
                                      str(config), "--listen", f"127.0.0.1:{http_port}"],
                                     preexec_fn=child_setup(agent_cpus))
            started = time.monotonic()
            with_sample = 0
            while True:  # warm-up: every source has a sample (or 60 s, then measure anyway)
                with contextlib.suppress(OSError):
                    _lat, body = scrape(http_port)
                    with_sample = samples_total(body)[1]
                    if with_sample >= n:
                        break
                if agent.poll() is not None:
                    raise SystemExit("the agent exited")
                if time.monotonic() - started > 60:
                    break
                time.sleep(0.5)
            warmup = time.monotonic() - started
            restored = None
            if args.fill_store:
                from timemon.analysis.streaming import DEFAULT_WINDOW

                # Restored: the count stops growing for 20 s (a source whose history
                # holds a detected step restarts its window and never gets there).
                best, since = -1, time.monotonic()
                while time.monotonic() - since < 20:
                    if agent.poll() is not None:
                        raise SystemExit("the agent exited")
                    count = full_windows(scrape(http_port)[1], DEFAULT_WINDOW)
                    if count > best:
                        best, since = count, time.monotonic()
                    time.sleep(2.0)
                restored = since - started
            time.sleep(max(2 * args.interval, started + args.settle - time.monotonic()))
            if args.profile:
                spy = subprocess.Popen([str(VENV_BIN / "py-spy"), "record", "-p",
                                        str(agent.pid), "-f", "raw", "-o", args.profile,
                                        "-d", str(int(args.seconds)), "-r", "50", "--nonblocking", "--gil"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            window_start_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            split0, wall0 = cpu_split(agent.pid), time.monotonic()
            load0 = machine_busy()
            sim_cpu0 = cpu_seconds(sim.pid)
            latencies: list[float] = []
            sizes: list[int] = []
            counts: list[tuple[float, float]] = []
            # Per scrape: (latency, the agent's CPU seconds, seconds stolen by the host)
            # while it ran, to tell a slow scrape that worked from one that waited.
            during: list[tuple[float, float, float]] = []
            next_scrape = time.monotonic()
            while True:
                agent_cpu, stolen = cpu_seconds(agent.pid), machine_busy()[2]
                lat, body = scrape(http_port)
                during.append((lat, cpu_seconds(agent.pid) - agent_cpu,
                               (machine_busy()[2] - stolen) / CLK_TCK))
                latencies.append(lat)
                sizes.append(len(body))
                counts.append((time.monotonic(), samples_total(body)[0]))
                if time.monotonic() - wall0 >= args.seconds:
                    break
                next_scrape = min(next_scrape + args.scrape_every, wall0 + args.seconds)
                time.sleep(max(0.0, next_scrape - time.monotonic()))
            wall = time.monotonic() - wall0
            load1 = machine_busy()
            split1 = cpu_split(agent.pid)
            user, system = split1[0] - split0[0], split1[1] - split0[1]
            cpu = user + system
            sim_cpu = cpu_seconds(sim.pid) - sim_cpu0
            window_end_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            rss = rss_bytes(agent.pid)
            with contextlib.suppress(OSError):
                lag = re.search(rb"^timemon_event_loop_lag_seconds ([0-9.e+-]+)$", body, re.M)
            if spy is not None:
                spy.wait(30)
        finally:
            if agent is not None:
                stop(agent)
            stop(sim)
            if spy is not None and spy.poll() is None:
                spy.kill()
        # Late and missed polls, from every sample the agent stored in the window.
        late = missed = stored = 0
        worst_gap = 0.0
        margin = int(2 * args.interval * 1e9)  # a poll in flight at either edge
        by_source: dict[int, list[int]] = {}
        if not args.no_store:
            with sqlite3.connect(store) as db:
                for sid, t in db.execute(
                        "SELECT source_id, t_ns FROM samples WHERE t_ns BETWEEN ? AND ? "
                        "ORDER BY source_id, t_ns", (window_start_ns, window_end_ns)):
                    by_source.setdefault(sid, []).append(t)
        expected = (window_end_ns - window_start_ns - margin) / 1e9 / args.interval
        for times in by_source.values():
            stored += len(times)
            gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)]
            late += sum(1 for g in gaps if g > 1.5 * args.interval)
            worst_gap = max([worst_gap, *gaps])
            missed += max(0, int(expected) - len(times))
        if not args.no_store:
            missed += (n - len(by_source)) * int(expected)
    (t_first, c_first), (t_last, c_last) = counts[0], counts[-1]
    rate = (c_last - c_first) / (t_last - t_first)
    busy = (load1[0] - load0[0]) / max(1, load1[1] - load0[1])
    stolen = (load1[2] - load0[2]) / max(1, load1[1] - load0[1])
    # The poll spacing the live statistics measured (timemon_sample_interval_seconds).
    spacings = [float(v) for v in _SPACING.findall(body)]
    spacing = statistics.median(spacings) if spacings else None
    others = busy * os.cpu_count() - (cpu + sim_cpu) / wall  # cores used by other processes
    per_source, window = (window_memory_per_source(args.window_sources, args.interval)
                          if not args.fill_store else (0.0, 0))
    if fill_seconds is not None:
        rest = "; the rest restarted at a detected step" if best < n else ""
        rows += [("store generated (full windows)", f"{fill_seconds:.0f} s"),
                 ("agent start to windows restored",
                  f"{restored:.0f} s ({best} of {n} full{rest})")]
    rows += [
        ("sources x interval", f"{n} x {args.interval:g} s, {wall:.0f} s measured"),
        ("CPUs: responders / agent", "shared (no placement)" if sim_cpus is None else
         f"{sorted(sim_cpus)} / {sorted(agent_cpus or ())}"),
        ("warm-up: sources with a sample", f"{with_sample}/{n} after {warmup:.1f} s"),
        ("agent CPU (% of one core)", f"{100 * cpu / wall:.1f} %"),
        ("agent CPU: user / system", f"{100 * user / wall:.1f} % / {100 * system / wall:.1f} %"),
        ("agent CPU per sample", f"{1e3 * cpu / wall / rate:.3f} ms" if rate else "-"),
        (f"projected agent CPU at {n / args.interval:.0f} samples/s",
         f"{100 * cpu / wall / rate * n / args.interval:.0f} % of one core" if rate else "-"),
        ("machine: CPUs busy / used by others", f"{100 * busy:.0f} % of {os.cpu_count()} "
                                                f"/ {others:.2f} cores"),
        ("machine: time stolen by the host", f"{100 * stolen:.1f} % of its CPUs' time"),
        ("simulator CPU (% of one core)", f"{100 * sim_cpu / wall:.1f} %"),
        ("agent RSS" + (" (every window full)" if args.fill_store else ""),
         f"{rss / 2**20:.1f} MiB"),
        ("samples per second", f"{rate:.1f} "
                               f"(ideal {n / args.interval:.0f})"),
        ("samples stored in window", f"{stored}"),
        ("measured sample interval, median", f"{spacing:.5f} s" if spacing else "-"),
        ("late polls (gap > 1.5 intervals)", "n/a (no store)" if args.no_store else
         f"{late} (worst gap {worst_gap:.2f} s)"),
        ("missed polls (expected - stored)", "n/a (no store)" if args.no_store else
         f"{missed} (expected {int(expected)}/source)"),
        ("scrape latency p50 / p90 / p99", f"{1e3 * percentile(latencies, 0.5):.1f} ms / "
                                           f"{1e3 * percentile(latencies, 0.9):.1f} ms / "
                                           f"{1e3 * percentile(latencies, 0.99):.1f} ms "
                                           f"({len(latencies)} scrapes)"),
        ("slowest scrapes (agent CPU, stolen)",
         ", ".join(f"{1e3 * lat:.0f} ms ({1e3 * cpu:.0f}, {1e3 * st:.0f} ms)"
                   for lat, cpu, st in sorted(during, reverse=True)[:3])),
        ("bytes per scrape", f"{statistics.mean(sizes):,.0f}"),
        ("event loop lag (last)", lag.group(1).decode() + " s" if lag else "-"),
    ]
    if not args.fill_store:
        rows += [
            (f"memory per source, full window ({window} samples)",
             f"{per_source / 2**10:.0f} KiB (measured on {args.window_sources} sources "
             "in-process)"),
            # No extrapolation from it: the estimators' buffers are allocated (and zeroed)
            # up front, so the agent's RSS above already holds most of it.
            ("RSS with every window full", "run with --fill-store (measured, not estimated)"),
        ]
    width = max(len(k) for k, _v in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
