"""Faults with real parts: the agent (a subprocess) keeps measuring and serving, says what
it cannot do, and loses nothing it accepted.

* an NTP server process stops and comes back;
* the store's directory is read-only (a read-only bind mount: root ignores chmod) or
  its file system is full (a small tmpfs), then writable again; its files stop taking
  writes while the agent runs (the immutable flag), then take them again;
* SIGKILL while writing, then a restart: every sample committed before the kill is
  there and ``PRAGMA integrity_check`` is ok;
* SIGHUP reloads the config: added sources start, removed ones stop, unchanged ones
  keep their series and counters;
* started with a soft limit on open files below what its sources need (each NTP
  source keeps a socket open), the agent lifts it and every source is polled;
* spoofed replies (forged origin, forged KoD RATE, wrong port, a replayed old reply,
  garbage) flooded at the agent's client sockets never enter a series, do not slow
  the source's polling, and do not slow the polling of another source.

Mounts need root (CI runs as root); every mount is undone even when a test fails.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import free_tcp_port, free_udp_port
from test_agent_e2e import samples, scrape, start_agent, stop, wait_for
from timemon.probes import ntp_packet as pkt

from timemon.simulator import NtpResponder, ResponderClock, ResponderThread


def key(metric: str, source: str) -> tuple[str, tuple]:
    return (metric, (("kind", "ntp"), ("source", source)))


def write_config(path: Path, store: Path | str, sources: dict[str, int],
                 interval: float = 1.0) -> None:
    text = f'[agent]\nstore = "{store}"\n'
    for name, port in sources.items():
        text += (f'\n[[source]]\nname = "{name}"\nkind = "ntp"\naddress = "127.0.0.1:{port}"\n'
                 f'interval = {interval}\nlab = true\ntimeout = 0.3\n')
    path.write_text(text)


def metric(port: int, name: str, labels: tuple = ()) -> float:
    return samples(scrape(port)).get((name, labels), 0.0)


def stored_count(db_path: Path) -> int:
    """Samples in the store; 0 while the agent is still creating its schema."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.fixture
def agent_proc(timemon_exe: str) -> Iterator[Callable[[Path], tuple[subprocess.Popen, int]]]:
    procs: list[subprocess.Popen] = []

    def start(config: Path) -> tuple[subprocess.Popen, int]:
        port = free_tcp_port()
        proc = start_agent(timemon_exe, config, port)
        procs.append(proc)
        return proc, port

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def mounts() -> Iterator[Callable[..., None]]:
    """``mount(*args)`` runs mount(8); every mount point used is unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    points: list[str] = []

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, timeout=10)
        if args[-1] not in points:
            points.append(args[-1])

    try:
        yield mount
    finally:
        for point in reversed(points):
            # A bind mount may be stacked; unmount until the point is a plain directory.
            for _ in range(4):
                if subprocess.run(["mountpoint", "-q", point]).returncode != 0:
                    break
                if subprocess.run(["umount", point], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", point], capture_output=True)


# -- open-file limit ----------------------------------------------------------------------


def test_a_low_open_file_limit_is_lifted(tmp_path: Path, timemon_exe: str,
                                         responders: ResponderThread) -> None:
    r = responders.add()
    n = 300
    config = tmp_path / "timemon.toml"
    write_config(config, tmp_path / "s.db", {f"s{i}": r.port for i in range(n)})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > n + 100, "the test needs a hard limit above its sources"

    def low_soft_limit() -> None:  # systemd starts services with a soft limit of 1024
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))

    http = free_tcp_port()
    proc = subprocess.Popen([timemon_exe, "agent", "--config", str(config), "--listen",
                             f"127.0.0.1:{http}"], preexec_fn=low_soft_limit,
                            stderr=subprocess.PIPE, text=True)
    try:
        def polled() -> bool:
            try:
                body = samples(scrape(http))
            except OSError:
                return False
            counts = [v for (name, _labels), v in body.items() if name == "timemon_samples_total"]
            return len(counts) == n and min(counts) >= 2

        wait_for(polled, timeout=30)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft_now = int(next(line for line in limits.splitlines()
                            if line.startswith("Max open files")).split()[3])
        assert soft_now == hard
        # A socket that cannot be opened (EMFILE) is a "network" error; a time-out of
        # the loaded responder now and then is not what this test is about.
        network = sum(v for (name, labels), v in samples(scrape(http)).items()
                      if name == "timemon_probe_errors_total" and ("reason", "network") in labels)
        assert network == 0
    finally:
        stop(proc)


# -- an NTP server stops and comes back ---------------------------------------------------


def test_ntp_server_stops_and_comes_back(tmp_path: Path, agent_proc) -> None:
    port = free_udp_port()
    server_cmd = [sys.executable, "-m", "timemon.simulator", "--port", str(port),
                  "--offset", "0.125"]
    server = subprocess.Popen(server_cmd)
    config = tmp_path / "timemon.toml"
    write_config(config, tmp_path / "s.db", {"sim": port})
    try:
        proc, http = agent_proc(config)
        wait_for(lambda: metric(http, "timemon_source_up", key("", "sim")[1]) == 1.0)
        server.kill()
        server.wait(10)
        wait_for(lambda: metric(http, "timemon_source_up", key("", "sim")[1]) == 0.0)
        down = samples(scrape(http))
        errors = sum(v for (n, labels), v in down.items()
                     if n == "timemon_probe_errors_total" and ("source", "sim") in labels)
        assert errors >= 1  # a refused port (ICMP) or a timeout, counted
        before = down[key("timemon_samples_total", "sim")]
        time.sleep(2)
        server = subprocess.Popen(server_cmd)
        wait_for(lambda: metric(http, "timemon_samples_total", key("", "sim")[1])
                 >= before + 3, timeout=30)
        after = samples(scrape(http))
        assert after[key("timemon_source_up", "sim")] == 1.0
        assert abs(after[key("timemon_offset_seconds", "sim")] + 0.125) < 2e-3
        code, err = stop(proc)
        assert code == 0, err
    finally:
        server.kill()
        server.wait(10)


# -- the store's directory read-only, or full ----------------------------------------------


def _store_fault_then_recover(tmp_path: Path, store_dir: Path, responders: ResponderThread,
                              agent_proc, recover: Callable[[], None],
                              inject: Callable[[], None] | None = None) -> None:
    """The store cannot write from the start (or from ``inject``, called once the agent
    has written), then can again (``recover``)."""
    r = responders.add(clock=ResponderClock(offset=0.01))
    config = tmp_path / "timemon.toml"
    db_path = store_dir / "samples.db"
    write_config(config, db_path, {"sim": r.port})
    proc, http = agent_proc(config)
    if inject is not None:
        wait_for(lambda: db_path.exists() and stored_count(db_path) >= 3)
        inject()
    # Measuring and serving go on; the store says it cannot write.
    wait_for(lambda: metric(http, "timemon_store_errors_total") >= 1)
    measured = metric(http, "timemon_samples_total", key("", "sim")[1])
    wait_for(lambda: metric(http, "timemon_samples_total", key("", "sim")[1]) >= measured + 3)
    m = samples(scrape(http))
    assert m[key("timemon_source_up", "sim")] == 1.0
    assert m[("timemon_store_backlog_samples", ())] >= 1
    recover()
    # The writer retries (every store.RETRY_SECONDS) and writes the whole backlog.
    wait_for(lambda: (mm := samples(scrape(http)))[("timemon_store_backlog_samples", ())] == 0
             and mm[key("timemon_samples_total", "sim")] > 0, timeout=30)
    errors_after_recovery = metric(http, "timemon_store_errors_total")
    time.sleep(2.5)
    final = samples(scrape(http))
    accepted = final[key("timemon_samples_total", "sim")]
    assert final[("timemon_store_errors_total", ())] == errors_after_recovery  # no new errors
    code, err = stop(proc)
    assert code == 0, err
    # Nothing accepted was lost: every sample the agent counted is in the store.
    assert stored_count(db_path) >= accepted
    assert integrity(db_path) == "ok"


def test_read_only_store_directory_then_writable(tmp_path: Path, responders: ResponderThread,
                                                 agent_proc, mounts) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    mounts("--bind", str(store_dir), str(store_dir))
    mounts("-o", "remount,ro,bind", str(store_dir))
    _store_fault_then_recover(
        tmp_path, store_dir, responders, agent_proc,
        lambda: subprocess.run(["mount", "-o", "remount,rw,bind", str(store_dir)], check=True))


def test_store_turns_read_only_mid_run_then_writable(tmp_path: Path,
                                                     responders: ResponderThread,
                                                     agent_proc) -> None:
    """The store's files stop taking writes while the agent runs.  A read-only remount is
    refused (EBUSY) while SQLite holds the file open for writing, so the immutable flag
    stands in for it: chattr +i stops even root's writes through descriptors already
    open (EPERM), as a read-only file system does (EROFS)."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    chattr = shutil.which("chattr")
    assert chattr, "chattr (e2fsprogs) is needed"
    frozen: list[Path] = []

    def flag(sign: str) -> None:
        if not frozen:  # the directory and the files SQLite has open (WAL mode)
            frozen.extend([store_dir, *(f for f in store_dir.iterdir()
                                        if f.name in ("samples.db", "samples.db-wal"))])
        subprocess.run([chattr, f"{sign}i", *map(str, frozen)], check=True,
                       capture_output=True, timeout=10)

    try:
        _store_fault_then_recover(tmp_path, store_dir, responders, agent_proc,
                                  recover=lambda: flag("-"), inject=lambda: flag("+"))
    finally:
        if frozen:
            subprocess.run([chattr, "-i", *map(str, frozen)], capture_output=True, timeout=10)


def test_full_store_file_system_then_space(tmp_path: Path, responders: ResponderThread,
                                           agent_proc, mounts) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    mounts("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(store_dir))
    filler = store_dir / "filler"
    try:  # fill it up: ENOSPC
        with open(filler, "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:
        pass
    # Room to grow: 16 MB (a remount keeps the files, so the db stays where it is).
    _store_fault_then_recover(
        tmp_path, store_dir, responders, agent_proc,
        lambda: (filler.unlink(), subprocess.run(
            ["mount", "-o", "remount,size=16m", str(store_dir)], check=True)))


# -- SIGKILL while writing ---------------------------------------------------------------------


def test_sigkill_while_writing_loses_no_committed_sample(tmp_path: Path,
                                                         responders: ResponderThread,
                                                         agent_proc) -> None:
    ports = {f"s{i}": responders.add(clock=ResponderClock(seed=i + 1)).port for i in range(8)}
    config = tmp_path / "timemon.toml"
    db_path = tmp_path / "samples.db"
    write_config(config, db_path, ports)
    for round_ in range(3):
        proc, http = agent_proc(config)
        enough = 8 * (round_ + 1) * 2
        wait_for(lambda n=enough: db_path.exists() and stored_count(db_path) >= n, timeout=30)
        time.sleep(0.37 * (round_ + 1))  # a different point of the write cycle each time
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            committed = set(db.execute("SELECT source_id, t_ns, offset FROM samples"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert integrity(db_path) == "ok"
        with sqlite3.connect(db_path) as db:
            after = set(db.execute("SELECT source_id, t_ns, offset FROM samples"))
        assert committed <= after, f"round {round_}: {len(committed - after)} samples lost"
    # And the agent starts again on that database and keeps writing to it.
    before = stored_count(db_path)
    proc, http = agent_proc(config)
    wait_for(lambda: stored_count(db_path) >= before + 8)
    code, err = stop(proc)
    assert code == 0, err
    assert integrity(db_path) == "ok"


# -- SIGHUP reload ----------------------------------------------------------------------------


def test_sighup_adds_removes_and_keeps_sources(tmp_path: Path, responders: ResponderThread,
                                               agent_proc) -> None:
    a, b, c = (responders.add(clock=ResponderClock(offset=0.001 * i, seed=i)) for i in (1, 2, 3))
    config = tmp_path / "timemon.toml"
    write_config(config, tmp_path / "s.db", {"keep": a.port, "drop": b.port})
    proc, http = agent_proc(config)
    wait_for(lambda: metric(http, "timemon_samples_total", key("", "keep")[1]) >= 10,
             timeout=30)
    before = samples(scrape(http))
    kept_before = before[key("timemon_samples_total", "keep")]
    write_config(config, tmp_path / "s.db", {"keep": a.port, "new": c.port})
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: metric(http, "timemon_samples_total", key("", "new")[1]) >= 2)
    requests_to_dropped = b.requests
    time.sleep(2.5)
    after = samples(scrape(http))
    assert not any(("source", "drop") in labels for (_n, labels) in after)
    assert b.requests <= requests_to_dropped + 1  # at most one poll in flight at the reload
    # Unchanged: the same source object, its counter continues (a restarted source would
    # count from 0 and could not have passed 10 + 2 in the ~5 s since the reload).
    assert after[key("timemon_samples_total", "keep")] >= kept_before + 2
    assert after[key("timemon_source_up", "new")] == 1.0
    code, err = stop(proc)
    assert code == 0, err


# -- spoofs and floods ----------------------------------------------------------------------------


class StormResponder(NtpResponder):
    """Answers every request genuinely, but first floods the client's socket with forged
    replies: garbage, KoD RATE with a wrong origin, a forged reply 1000 s off, a replay of
    the previous genuine reply, and a reply from another port."""

    burst = 60

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.previous: bytes | None = None
        self.forged = 0

    def _answer(self, data: bytes, address: tuple, rx_ns: int) -> None:
        if len(data) < pkt.NTP_PACKET_SIZE:
            return
        self.requests += 1
        self.request_times_ns.append(time.monotonic_ns())
        request_tx = pkt.NTP_PACKET.unpack_from(data)[10]
        forged = [self._rng.randbytes(self._rng.randrange(1, 90)) for _ in range(self.burst)]
        forged += [self._reply(request_tx ^ (i + 1), rx_ns, stratum=0, refid=b"RATE", leap=3)
                   for i in range(self.burst)]
        forged.append(self._reply(request_tx ^ 0xFF00, rx_ns + 1_000_000_000_000))
        if self.previous is not None:
            forged.append(self.previous)  # replayed: its origin is an old nonce
        genuine = self._reply(request_tx, rx_ns)
        try:
            for packet in forged:
                self.sock.sendto(packet, address)
                self.forged += 1
            self.other.sendto(self._reply(request_tx, rx_ns + 1_000_000_000_000), address)
            self.sock.sendto(genuine, address)
        except OSError:
            pass
        self.previous = genuine


def test_spoof_flood_never_enters_a_series_nor_slows_polling(
        tmp_path: Path, responders: ResponderThread, agent_proc) -> None:
    import asyncio

    async def make_storm() -> StormResponder:
        storm = StormResponder(clock=ResponderClock(offset=0.0))
        storm.start(responders.loop)
        return storm

    storm = asyncio.run_coroutine_threadsafe(make_storm(), responders.loop).result(5)
    responders.responders.append(storm)
    healthy = responders.add(clock=ResponderClock(offset=0.02, seed=5))
    config = tmp_path / "timemon.toml"
    db_path = tmp_path / "s.db"
    write_config(config, db_path, {"storm": storm.port, "healthy": healthy.port})
    proc, http = agent_proc(config)
    time.sleep(12)
    m = samples(scrape(http))
    code, err = stop(proc)
    assert code == 0, err
    assert storm.forged >= 10 * 2 * StormResponder.burst
    # The flooded source: polled at its interval (forged RATE ignored), every sample genuine.
    assert m[key("timemon_ntp_poll_interval_seconds", "storm")] == 1.0
    assert m[key("timemon_source_up", "storm")] == 1.0
    rejected = {dict(labels).get("reason"): v for (n, labels), v in m.items()
                if n == "timemon_probe_errors_total" and ("source", "storm") in labels}
    assert rejected.get("bad_origin", 0) >= 10 * StormResponder.burst
    assert rejected.get("wrong_port", 0) >= 5
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT s.name, x.t_ns, x.offset FROM samples x JOIN sources s "
                          "ON s.id = x.source_id ORDER BY x.t_ns").fetchall()
    storm_offsets = [o for n, _t, o in rows if n == "storm"]
    assert len(storm_offsets) >= 6
    assert all(abs(o) < 5e-3 for o in storm_offsets)  # no forged 1000 s, no replay
    # Cadence: both sources keep a poll every interval (a gap > 1.5 intervals is late).
    for name in ("storm", "healthy"):
        times = [t for n, t, _o in rows if n == name]
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)]
        assert len(times) >= 8, name
        assert max(gaps) < 1.5, (name, max(gaps))
    healthy_offsets = [o for n, _t, o in rows if n == "healthy"]
    assert all(abs(o + 0.02) < 5e-3 for o in healthy_offsets)
