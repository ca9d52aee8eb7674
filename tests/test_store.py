"""The SQLite store: schema versions, write-behind, failures counted and retried."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from timemon import store as store_mod
from timemon.source import Sample
from timemon.store import SCHEMA_VERSION, SampleStore, StoreError, _Pending, open_database


def wait_written(store: SampleStore, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while store.written < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.written >= n


def test_write_and_read_back(tmp_path: Path) -> None:
    st = SampleStore(str(tmp_path / "a" / "s.db"), retention=86400)
    st.start()
    now = time.time_ns()
    samples = [Sample(now + i, i * 1e-6, 2e-5) for i in range(100)]
    for s in samples:
        st.append("gm", "ntp", s)
    st.append("other", "ntp", Sample(now, 0.5, None))
    st.close()
    assert st.written == 101 and st.errors == 0
    assert st.load_recent("gm", "ntp", 10) == samples[-10:]
    assert st.load_recent("other", "ntp", 10) == [Sample(now, 0.5, None)]
    assert st.load_recent("missing", "ntp", 10) == []


def test_schema_version_and_migration_from_an_older_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.db")
    db = open_database(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("INSERT INTO sources (name, kind) VALUES ('a', 'ntp')")
    db.close()

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE samples ADD COLUMN note TEXT")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, add_column])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    db = store_mod.open_database(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert "note" in [row[1] for row in db.execute("PRAGMA table_info(samples)")]
    assert db.execute("SELECT name FROM sources").fetchall() == [("a",)]  # data kept
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer than this timemon"):
        open_database(path)


def test_failed_writes_are_counted_kept_and_retried(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "RETRY_SECONDS", 0.1)
    blocker = tmp_path / "dir"
    blocker.write_text("a file where a directory should be")
    st = SampleStore(str(blocker / "s.db"), retention=86400)
    st.start()
    now = time.time_ns()
    st.append("gm", "ntp", Sample(now, 0.1))
    deadline = time.monotonic() + 5
    while st.errors == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert st.errors >= 1 and st.backlog == 1 and st.written == 0
    blocker.unlink()  # the disk comes back
    st.append("gm", "ntp", Sample(now + 1, 0.2))
    wait_written(st, 2)
    st.close()
    assert st.backlog == 0
    assert st.load_recent("gm", "ntp", 10) == [Sample(now, 0.1), Sample(now + 1, 0.2)]


def test_retention_deletes_old_samples(tmp_path: Path) -> None:
    now = 2_000_000_000 * 10**9
    st = SampleStore(str(tmp_path / "s.db"), retention=3600, clock=lambda: now)
    st.start()
    st.append("gm", "ntp", Sample(now - 7200 * 10**9, 0.1))
    st.append("gm", "ntp", Sample(now - 60 * 10**9, 0.2))
    wait_written(st, 2)
    st._last_retention = None  # the writer checks retention hourly; make the check due now
    st.append("gm", "ntp", Sample(now, 0.3))
    wait_written(st, 3)
    st.close()
    assert [s.offset for s in st.load_recent("gm", "ntp", 10)] == [0.2, 0.3]


def samples_in_database_file(path: Path, scratch: Path) -> int:
    """Samples in the database file alone, without its WAL: what WAL checkpoints copied in."""
    copy = scratch / "without-wal.db"
    copy.write_bytes(path.read_bytes())
    with contextlib.closing(sqlite3.connect(copy)) as db:
        try:
            return db.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # no table: even the schema is still in the WAL
            return 0


def test_the_wal_is_copied_into_the_database_on_a_timer_not_every_1000_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "WAL_CHECKPOINT_SECONDS", 3600.0)
    path = tmp_path / "s.db"
    st = SampleStore(str(path), retention=1e9)
    now = time.time_ns()
    for i in range(1500):  # a commit each, as the writer makes them: two pages or more
        st._backlog.append(_Pending(f"src{i % 300}", "ntp", Sample(now + i, 1e-6, 1e-4)))
        st._flush()
        st._maybe_checkpoint_wal()
    # WAL file: a 32-byte header, then frames of a 24-byte header and a page (sqlite.org
    # walformat).  SQLite's default would have restarted it after 1,000 frames.
    page = st._db.execute("PRAGMA page_size").fetchone()[0]
    frames = ((path.parent / "s.db-wal").stat().st_size - 32) // (24 + page)
    assert frames > 2000
    assert samples_in_database_file(path, tmp_path) == 0

    st._next_wal_checkpoint = time.monotonic()  # the timer runs out
    st._maybe_checkpoint_wal()
    assert samples_in_database_file(path, tmp_path) == 1500
    assert st.errors == 0 and st.written == 1500
    st._db.close()


def test_a_chain_copy_has_every_field_and_is_its_own() -> None:
    from dataclasses import fields

    from timemon.store import _Chain

    chain = _Chain(*[f"v{i}" for i in range(len(fields(_Chain)))])  # type: ignore[arg-type]
    copy = chain.copy()
    assert copy == chain and copy is not chain
