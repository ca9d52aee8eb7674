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
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from timemon.source import Sample

log = logging.getLogger("timemon.store")

FLUSH_SECONDS = 1.0
RETENTION_CHECK_SECONDS = 3600.0
RETRY_SECONDS = 5.0
MAX_BACKLOG = 2_000_000


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


# MIGRATIONS[i] takes a database from version i to i + 1.  Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1]
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


@dataclass(frozen=True)
class _Pending:
    name: str
    kind: str
    sample: Sample


class SampleStore:
    """Asynchronous writer of samples into one SQLite file."""

    def __init__(self, path: str, retention: float, clock: Callable[[], int] | None = None):
        self.path = path
        self.retention = retention
        self.errors = 0
        self.written = 0
        self._clock = clock or (lambda: time.clock_gettime_ns(time.CLOCK_REALTIME))
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._backlog: list[_Pending] = []
        self._db: sqlite3.Connection | None = None
        self._source_ids: dict[tuple[str, str], int] = {}
        self._thread: threading.Thread | None = None
        self._last_retention: float | None = None  # None: a check is due
        self._last_attempt = 0.0
        self.last_error = ""

    # -- loop side -----------------------------------------------------------

    def append(self, name: str, kind: str, sample: Sample) -> None:
        """Queue a sample; never blocks."""
        self._queue.put(_Pending(name, kind, sample))

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
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return []
        try:
            rows = db.execute(
                "SELECT t_ns, offset, delay FROM samples WHERE source_id = "
                "(SELECT id FROM sources WHERE name = ? AND kind = ?) "
                "ORDER BY t_ns DESC LIMIT ?", (name, kind, limit)).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()
        return [Sample(t, o, d) for t, o, d in reversed(rows)]

    # -- writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            try:
                item = self._queue.get(timeout=FLUSH_SECONDS)
                while True:
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            self._backlog.extend(batch)
            if self._backlog and (stopping or batch or self._retry_due()):
                self._flush()
            self._maybe_expire()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _retry_due(self) -> bool:
        return time.monotonic() - self._last_attempt >= RETRY_SECONDS

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_database(self.path)
            self._source_ids.clear()
            log.info("store %s open (schema version %d)", self.path, SCHEMA_VERSION)
        return self._db

    def _source_id(self, db: sqlite3.Connection, name: str, kind: str) -> int:
        key = (name, kind)
        if key not in self._source_ids:
            db.execute("INSERT OR IGNORE INTO sources (name, kind) VALUES (?, ?)", key)
            row = db.execute("SELECT id FROM sources WHERE name = ? AND kind = ?", key).fetchone()
            self._source_ids[key] = row[0]
        return self._source_ids[key]

    def _flush(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [(self._source_id(db, p.name, p.kind), p.sample.t_ns, p.sample.offset,
                         p.sample.delay) for p in self._backlog]
                db.executemany(
                    "INSERT INTO samples (source_id, t_ns, offset, delay) VALUES (?, ?, ?, ?)",
                    rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._source_ids.clear()
                raise
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._on_error(exc)
            return
        self.written += len(self._backlog)
        if self.last_error:
            log.info("store %s writable again; %d queued samples written", self.path,
                     len(self._backlog))
            self.last_error = ""
        self._backlog.clear()

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

    def _maybe_expire(self) -> None:
        now = time.monotonic()
        if self._db is None or (self._last_retention is not None
                                and now - self._last_retention < RETENTION_CHECK_SECONDS):
            return
        self._last_retention = now
        cutoff = self._clock() - int(self.retention * 1e9)
        try:
            deleted = self._db.execute("DELETE FROM samples WHERE t_ns < ?", (cutoff,)).rowcount
        except sqlite3.Error as exc:
            self._on_error(exc)
            return
        if deleted:
            log.info("store %s: %d samples older than the retention removed", self.path, deleted)
