"""The SQLite sample store: every accepted raw sample, kept across restarts.

Writes happen on one writer thread fed by a queue, so the event loop never
waits on the disk.  A failed write (read-only or full disk, a locked file) is
counted in ``errors`` and the batch is kept in memory and retried: measuring
never stops, and nothing accepted is dropped unless the backlog passes
``MAX_BACKLOG`` samples.  The schema carries a version (``PRAGMA
user_version``) and migrations run in order on open.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from timemon import chain
from timemon.families import Families, Fragment
from timemon.source import Sample

log = logging.getLogger("timemon.store")

FLUSH_SECONDS = 1.0
# At most one transaction per FLUSH_GAP: at 1,000 samples/s a commit per arriving
# sample would cost more than the samples themselves.
FLUSH_GAP = 0.25
RETENTION_CHECK_SECONDS = 3600.0
# The WAL is copied into the database (a WAL checkpoint, which also fsyncs) every
# WAL_CHECKPOINT_SECONDS, or sooner when it holds WAL_CHECKPOINT_PAGES pages.  SQLite's
# default, every 1,000 pages, came about once a second at 1,000 sources with full
# windows: each commit rewrites one index leaf per source (~1,100 pages a second), so a
# checkpoint copied nearly every frame it had, and the writer thread used 5.1-5.3 % of
# a core (_flush driven as the writer does, on a 16.4 M-row store, 40 s runs).  Copied
# every ~10 s, each leaf is written to the database once for ~10 commits: 3.6-4.0 %.
# The cost: with synchronous=NORMAL the WAL is fsynced only at a checkpoint, so a
# power cut can lose up to this much of the last commits (an agent crash loses none).
WAL_CHECKPOINT_SECONDS = 10.0
WAL_CHECKPOINT_PAGES = 20_000
RETRY_SECONDS = 5.0
MAX_BACKLOG = 2_000_000
CHECKPOINT_SAMPLES = 1000  # a checkpoint per source after this many new samples ...
CHECKPOINT_SECONDS = 600.0  # ... or this long after its last one, whichever comes first


def _migrate_to_1(db: sqlite3.Connection) -> None:
    # One statement per execute(): executescript() would commit the migration's transaction.
    db.execute(
        """CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            UNIQUE (name, kind)
        )""")
    # offset: local - reference, seconds; delay: round trip, seconds (NULL if none)
    db.execute(
        """CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources (id),
            t_ns INTEGER NOT NULL,
            offset REAL NOT NULL,
            delay REAL
        )""")
    db.execute("CREATE INDEX samples_by_source_time ON samples (source_id, t_ns)")


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """The hash chain (timemon/chain.py): seq and hash per row, checkpoints, anchors."""
    db.execute("ALTER TABLE samples ADD COLUMN seq INTEGER")
    db.execute("ALTER TABLE samples ADD COLUMN hash BLOB")
    # One row per source and checkpoint: the chain head (seq, hash) when it was taken.
    db.execute(
        """CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources (id),
            t_ns INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            head BLOB NOT NULL,
            signature BLOB,
            key_id TEXT
        )""")
    # The last link that retention deleted: the chain continues from it.
    db.execute(
        """CREATE TABLE chain_anchors (
            source_id INTEGER PRIMARY KEY REFERENCES sources (id),
            seq INTEGER NOT NULL,
            hash BLOB NOT NULL,
            t_ns INTEGER NOT NULL
        )""")
    # What a source knows about its reference (server, refid, grandmaster, receiver).
    db.execute(
        """CREATE TABLE source_meta (
            source_id INTEGER NOT NULL REFERENCES sources (id),
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            t_ns INTEGER NOT NULL,
            PRIMARY KEY (source_id, key)
        )""")
    # Rows written before the chain existed are chained now, in insertion order.
    names = dict((r[0], (r[1], r[2])) for r in db.execute("SELECT id, name, kind FROM sources"))
    heads: dict[int, tuple[int, bytes]] = {}
    updates: list[tuple[int, bytes, int]] = []
    for rid, sid, t_ns, offset, delay in db.execute(
            "SELECT id, source_id, t_ns, offset, delay FROM samples ORDER BY id").fetchall():
        seq, prev = heads.get(sid, (0, chain.GENESIS))
        name, kind = names.get(sid, ("", ""))
        h = chain.link_hash(prev, chain.identity(name, kind), seq + 1, t_ns, offset, delay)
        heads[sid] = (seq + 1, h)
        updates.append((seq + 1, h, rid))
    db.executemany("UPDATE samples SET seq = ?, hash = ? WHERE id = ?", updates)


# MIGRATIONS[i] takes a database from version i to i + 1.  Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_to_2]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    pass


def open_database(path: str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate; raises sqlite3.Error or OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {version} is newer than this timemon "
                             f"({SCHEMA_VERSION}); upgrade timemon")
        for target in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            MIGRATIONS[target](db)
            db.execute(f"PRAGMA user_version = {target + 1}")
            db.execute("COMMIT")
            log.info("store %s migrated to schema version %d", path, target + 1)
    except BaseException:
        db.close()
        raise
    return db


@dataclass(slots=True)  # not frozen (one a sample): see probes/ntp_packet.py's ServerReply
class _Pending:
    name: str
    kind: str
    sample: Sample


def _chain_families(heads: dict[tuple[str, str], tuple[int, str]]) -> Families:
    out = Families()
    for (name, kind), (seq, head) in sorted(heads.items()):
        out.info("timemon_store_checkpoint",
                 "Hash-chain head (SHA-256, hex) and sequence number of a source's samples "
                 "at the store's last checkpoint; check with timemon verify.",
                 ("source", "kind"), (name, kind), {"seq": str(seq), "head": head})
    return out


@dataclass(frozen=True)
class _Meta:
    name: str
    kind: str
    key: str
    value: str
    t_ns: int


@dataclass
class _Chain:
    """The writer's view of one source's chain (see timemon/chain.py)."""

    sid: int
    ident: bytes
    seq: int  # of the last stored link (0: none yet)
    head: bytes
    checkpoint_seq: int
    checkpoint_mono: float

    def copy(self) -> _Chain:
        # What dataclasses.replace does, at a fifth of its cost: a flush copies the
        # chain of every source in it (1,000 per flush at 1,000 sources).
        return _Chain(self.sid, self.ident, self.seq, self.head, self.checkpoint_seq,
                      self.checkpoint_mono)


class SampleStore:
    """Asynchronous writer of samples into one SQLite file."""

    def __init__(self, path: str, retention: float, clock: Callable[[], int] | None = None,
                 signing_key: Any = None, checkpoint_samples: int | None = None,
                 checkpoint_seconds: float | None = None):
        """``signing_key``: an Ed25519 private key (chain.load_private_key) to sign checkpoints."""
        self.path = path
        self.retention = retention
        self.errors = 0
        self.written = 0
        self._clock = clock or (lambda: time.clock_gettime_ns(time.CLOCK_REALTIME))
        self._queue: queue.SimpleQueue[_Pending | _Meta | None] = queue.SimpleQueue()
        self._backlog: list[_Pending | _Meta] = []
        self._db: sqlite3.Connection | None = None
        self._source_ids: dict[tuple[str, str], int] = {}
        self._thread: threading.Thread | None = None
        self._last_retention: float | None = None  # None: a check is due
        self._last_attempt = 0.0
        self.last_error = ""
        self._signing_key = signing_key
        self._key_id = chain.key_id(signing_key.public_key()) if signing_key is not None else None
        self._checkpoint_samples = checkpoint_samples
        self._checkpoint_seconds = checkpoint_seconds
        self._chains: dict[tuple[str, str], _Chain] = {}
        self._next_chain_scan = 0.0  # monotonic time to look for time-based checkpoints
        self._next_wal_checkpoint = 0.0  # monotonic time of the next timed WAL checkpoint
        # (name, kind) -> (seq, hex head) of the last checkpoint written; replaced, never mutated
        self.checkpoint_heads: dict[tuple[str, str], tuple[int, str]] = {}
        # The heads' /metrics text, and the dict it was made from (the writer replaces
        # the dict at each checkpoint, never changes it in place).
        self._heads_text: tuple[dict[tuple[str, str], tuple[int, str]], Fragment] | None = None

    # -- loop side -----------------------------------------------------------

    def append(self, name: str, kind: str, sample: Sample) -> None:
        """Queue a sample; never blocks."""
        self._queue.put(_Pending(name, kind, sample))

    def note(self, name: str, kind: str, key: str, value: str) -> None:
        """Record what a source knows about its reference (e.g. ``refid``); never blocks.

        Kept per source and key (the latest value) for reports; not part of the chain.
        """
        self._queue.put(_Meta(name, kind, key, str(value), self._clock()))

    def collect_chain(self, out: Families) -> None:
        """``timemon_store_checkpoint_info``: one series per source, the last checkpoint head.

        Its labels change at each checkpoint (every CHECKPOINT_SAMPLES samples or
        CHECKPOINT_SECONDS), so a source has one live series, not one per sample.
        The text is kept from one checkpoint to the next: at 1,000 sources, making it
        took 3.4 ms a scrape (in-process).
        """
        heads = self.checkpoint_heads  # replaced whole by the writer thread: no copy needed
        kept = self._heads_text
        if kept is None or kept[0] is not heads:
            kept = self._heads_text = (heads, Fragment(lambda: _chain_families(heads)))
        out.merge(kept[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timemon-store", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (in-flight writes finish) and stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    # -- reads (start-up, tools) ---------------------------------------------------

    def load_recent(self, name: str, kind: str, limit: int) -> list[Sample]:
        """The last ``limit`` samples of a source, oldest first; [] when unreadable."""
        return [Sample(t, o, d)
                for t, o, d in self._recent_rows(name, kind, limit, "t_ns, offset, delay")]

    def load_recent_arrays(self, name: str, kind: str, limit: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last ``limit`` samples' times (int64 ns), offsets and delays (NaN where a
        sample has none), oldest first, as arrays: a restart replays 16,384 per source
        without a Sample object each."""
        rows = self._recent_rows(name, kind, limit, "t_ns, offset, delay")
        nan = math.nan
        return (np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                np.fromiter((r[1] for r in rows), float, len(rows)),
                np.fromiter((nan if r[2] is None else r[2] for r in rows), float, len(rows)))

    def _recent_rows(self, name: str, kind: str, limit: int, columns: str) -> list[tuple]:
        """The last ``limit`` rows' ``columns`` (one of the two lists above), oldest first."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return []
        try:
            rows = db.execute(
                f"SELECT {columns} FROM samples WHERE source_id = "  # noqa: S608 - fixed text
                "(SELECT id FROM sources WHERE name = ? AND kind = ?) "
                "ORDER BY t_ns DESC LIMIT ?", (name, kind, limit)).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()
        rows.reverse()
        return rows

    # -- writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending | _Meta] = []
            stopping = self._gather(batch, time.monotonic() + FLUSH_SECONDS, first_only=True)
            if batch and not stopping:  # group what arrives in the next FLUSH_GAP too
                stopping = self._gather(batch, self._last_attempt + FLUSH_GAP)
            self._backlog.extend(batch)
            if self._backlog and (stopping or batch or self._retry_due()):
                self._flush(final=stopping)
            elif stopping and any(c.seq > c.checkpoint_seq for c in self._chains.values()):
                self._flush(final=True)  # a last checkpoint: no unverified tail after a clean stop
            self._maybe_checkpoint_wal()
            self._maybe_expire()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _gather(self, batch: list[_Pending | _Meta], deadline: float,
                first_only: bool = False) -> bool:
        """Move queued items into ``batch`` until ``deadline`` (monotonic; with
        ``first_only``, only until the first item and what is queued behind it).
        Returns True when the stop marker was seen."""
        slept = False
        while True:
            try:
                if first_only and batch:
                    item = self._queue.get_nowait()
                elif first_only:
                    timeout = deadline - time.monotonic()
                    item = (self._queue.get(timeout=timeout) if timeout > 0
                            else self._queue.get_nowait())
                else:
                    # Sleep out the gap once, then take what queued meanwhile: waking on
                    # each item cost two GIL hand-offs per sample at 1,000 samples/s.
                    if not slept:
                        slept = True
                        time.sleep(max(0.0, deadline - time.monotonic()))
                    item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)

    def _retry_due(self) -> bool:
        return time.monotonic() - self._last_attempt >= RETRY_SECONDS

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_database(self.path)
            # Per connection; the WAL checkpoints are timed by _maybe_checkpoint_wal.
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._next_wal_checkpoint = time.monotonic() + WAL_CHECKPOINT_SECONDS
            self._source_ids.clear()
            self._chains.clear()
            log.info("store %s open (schema version %d)", self.path, SCHEMA_VERSION)
        return self._db

    def _source_id(self, db: sqlite3.Connection, name: str, kind: str) -> int:
        key = (name, kind)
        if key not in self._source_ids:
            db.execute("INSERT OR IGNORE INTO sources (name, kind) VALUES (?, ?)", key)
            row = db.execute("SELECT id FROM sources WHERE name = ? AND kind = ?", key).fetchone()
            self._source_ids[key] = row[0]
        return self._source_ids[key]

    def _chain(self, db: sqlite3.Connection, name: str, kind: str) -> _Chain:
        key = (name, kind)
        c = self._chains.get(key)
        if c is None:
            sid = self._source_id(db, name, kind)
            row = db.execute("SELECT seq, hash FROM samples WHERE source_id = ? "
                             "ORDER BY id DESC LIMIT 1", (sid,)).fetchone()
            if row is None:  # nothing stored, or everything removed by retention
                row = db.execute("SELECT seq, hash FROM chain_anchors WHERE source_id = ?",
                                 (sid,)).fetchone()
            seq, head = row if row is not None else (0, chain.GENESIS)
            ck = db.execute("SELECT seq FROM checkpoints WHERE source_id = ? "
                            "ORDER BY id DESC LIMIT 1", (sid,)).fetchone()
            c = _Chain(sid, chain.identity(name, kind), seq, head,
                       ck[0] if ck else 0, time.monotonic())
            self._chains[key] = c
        return c

    def _flush(self, final: bool = False) -> None:
        self._last_attempt = time.monotonic()
        n_samples = 0
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                # Work on copies: the in-memory heads move only once the transaction commits.
                work: dict[tuple[str, str], _Chain] = {}
                rows = []
                metas = []
                link = chain.link_hash
                append = rows.append
                for p in self._backlog:
                    key = (p.name, p.kind)
                    c = work.get(key)
                    if c is None:
                        c = work[key] = self._chain(db, p.name, p.kind).copy()
                    if p.__class__ is _Meta:
                        metas.append((c.sid, p.key, p.value, p.t_ns))
                        continue
                    s = p.sample
                    delay = s.delay
                    if delay is not None and delay != delay:  # NaN: SQLite would store NULL
                        delay = None
                    seq = c.seq = c.seq + 1
                    head = c.head = link(c.head, c.ident, seq, s.t_ns, s.offset, delay)
                    append((c.sid, s.t_ns, s.offset, delay, seq, head))
                n_samples = len(rows)
                db.executemany("INSERT INTO samples (source_id, t_ns, offset, delay, seq, hash) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows)
                if metas:
                    db.executemany("INSERT OR REPLACE INTO source_meta (source_id, key, value, t_ns)"
                                   " VALUES (?, ?, ?, ?)", metas)
                # Sources without samples in this batch take part only when a time-based
                # (or final) checkpoint is due: copying every chain per flush is costly,
                # and so is looking at all of them, so that happens about once a second.
                now = time.monotonic()
                if final or now >= self._next_chain_scan:
                    self._next_chain_scan = now + min(1.0, self._checkpoint_period() / 4)
                    for key, c in self._chains.items():
                        if key not in work and self._checkpoint_due(c, final, now):
                            work[key] = c.copy()
                taken = self._checkpoints(db, work, final)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._source_ids.clear()
                self._chains.clear()
                raise
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._on_error(exc)
            return
        self._chains.update(work)
        if taken:
            heads = dict(self.checkpoint_heads)
            for key, seq, head in taken:
                heads[key] = (seq, head.hex())
                log.info("store %s: checkpoint source %s (%s) seq %d head %s%s", self.path,
                         key[0], key[1], seq, head.hex(), " signed" if self._key_id else "")
            self.checkpoint_heads = heads
        self.written += n_samples
        if self.last_error:
            log.info("store %s writable again; %d queued samples written", self.path,
                     n_samples)
            self.last_error = ""
        self._backlog.clear()

    def _checkpoint_due(self, c: _Chain, final: bool, now_mono: float | None = None,
                        every: int | None = None, seconds: float | None = None) -> bool:
        """Uncheckpointed samples, and a clean stop, enough samples, or enough time."""
        new = c.seq - c.checkpoint_seq
        if new <= 0:
            return False
        every = every or self._checkpoint_samples or CHECKPOINT_SAMPLES
        if seconds is None:
            seconds = self._checkpoint_period()
        now_mono = time.monotonic() if now_mono is None else now_mono
        return final or new >= every or now_mono - c.checkpoint_mono >= seconds

    def _checkpoint_period(self) -> float:
        return CHECKPOINT_SECONDS if self._checkpoint_seconds is None else self._checkpoint_seconds

    def _checkpoints(self, db: sqlite3.Connection, work: dict[tuple[str, str], _Chain],
                     final: bool) -> list[tuple[tuple[str, str], int, bytes]]:
        every = self._checkpoint_samples or CHECKPOINT_SAMPLES
        seconds = self._checkpoint_period()
        now_mono = time.monotonic()
        now_ns = self._clock()
        taken = []
        for key, c in work.items():
            if not self._checkpoint_due(c, final, now_mono, every, seconds):
                continue
            signature = None
            if self._signing_key is not None:
                signature = self._signing_key.sign(
                    chain.checkpoint_message(c.ident, c.seq, now_ns, c.head))
            db.execute("INSERT INTO checkpoints (source_id, t_ns, seq, head, signature, key_id) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (c.sid, now_ns, c.seq, c.head, signature, self._key_id))
            c.checkpoint_seq = c.seq
            c.checkpoint_mono = now_mono
            taken.append((key, c.seq, c.head))
        return taken

    def _on_error(self, exc: BaseException) -> None:
        self.errors += 1
        message = f"{type(exc).__name__}: {exc}"
        if message != self.last_error:
            log.error("store %s: write failed (%s); %d samples kept in memory, retrying",
                      self.path, message, len(self._backlog))
        self.last_error = message
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if len(self._backlog) > MAX_BACKLOG:
            dropped = len(self._backlog) - MAX_BACKLOG
            del self._backlog[:dropped]
            log.error("store %s: backlog over %d samples, dropped the %d oldest", self.path,
                      MAX_BACKLOG, dropped)

    def _maybe_checkpoint_wal(self) -> None:
        """A passive WAL checkpoint every WAL_CHECKPOINT_SECONDS (see there)."""
        now = time.monotonic()
        if self._db is None or now < self._next_wal_checkpoint:
            return
        self._next_wal_checkpoint = now + WAL_CHECKPOINT_SECONDS
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            self._on_error(exc)

    def _maybe_expire(self) -> None:
        now = time.monotonic()
        if self._db is None or (self._last_retention is not None
                                and now - self._last_retention < RETENTION_CHECK_SECONDS):
            return
        self._last_retention = now
        cutoff = self._clock() - int(self.retention * 1e9)
        try:
            deleted = self._expire(self._db, cutoff)
        except sqlite3.Error as exc:
            self._on_error(exc)
            return
        if deleted:
            log.info("store %s: %d samples older than the retention removed", self.path, deleted)

    @staticmethod
    def _expire(db: sqlite3.Connection, cutoff: int) -> int:
        """Delete, per source, the longest chain prefix older than ``cutoff``; anchor the rest.

        A prefix in chain (insertion) order, not every row with t_ns < cutoff: after a
        clock step back, an old-looking row in the middle of a chain stays until the
        rows before it expire, so the kept rows always form an unbroken chain.
        """
        deleted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for (sid,) in db.execute("SELECT DISTINCT source_id FROM samples").fetchall():
                keep = db.execute("SELECT MIN(id) FROM samples WHERE source_id = ? AND t_ns >= ?",
                                  (sid, cutoff)).fetchone()[0]
                last = db.execute(
                    "SELECT id, seq, hash, t_ns FROM samples WHERE source_id = ? AND id < ? "
                    "ORDER BY id DESC LIMIT 1",
                    (sid, keep if keep is not None else 1 << 62)).fetchone()
                if last is None:
                    continue
                rid, seq, h, t_ns = last
                deleted += db.execute("DELETE FROM samples WHERE source_id = ? AND id <= ?",
                                      (sid, rid)).rowcount
                if seq is not None:
                    db.execute("INSERT OR REPLACE INTO chain_anchors (source_id, seq, hash, t_ns) "
                               "VALUES (?, ?, ?, ?)", (sid, seq, h, t_ns))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return deleted
