"""The store's hash chain: any single altered, deleted, inserted or reordered row is named."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timemon import chain
from timemon.cli import main
from timemon.source import Sample
from timemon.store import SampleStore, _Pending, open_database

T0 = 1_800_000_000 * 10**9
N = 60


def fill(path: Path, n: int = N, key: object = None, every: int = 20) -> None:
    st = SampleStore(str(path), retention=10 * 365 * 86400, clock=lambda: T0 + n * 10**9,
                     signing_key=key, checkpoint_samples=every)
    # Flushed in batches of ``every`` samples per source by hand (what the writer thread
    # does), so the checkpoints fall at known places: seq 20, 40, 60.
    for i in range(n):
        st._backlog.append(_Pending("gm", "ntp", Sample(T0 + i * 10**9, 1e-6 * (i % 7),
                                                        2e-5 if i % 3 else None)))
        st._backlog.append(_Pending("gps", "gnss", Sample(T0 + i * 10**9 + 5, -3e-7 * i)))
        if (i + 1) % every == 0:
            st._flush()
    st._flush(final=True)
    assert st._db is not None
    st._db.close()
    assert st.written == 2 * n and st.errors == 0


def verify(path: Path, *extra: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["verify", str(path), *extra])
    return r.exit_code, r.stdout, r.stderr


def row_id(db: sqlite3.Connection, source: str, seq: int) -> int:
    return db.execute("SELECT samples.id FROM samples JOIN sources ON sources.id = source_id "
                      "WHERE name = ? AND seq = ?", (source, seq)).fetchone()[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    fill(path)
    return path


def test_untouched_store_verifies(store: Path, tmp_path: Path) -> None:
    # Written by the writer thread: a clean stop leaves no unverified tail.
    st = SampleStore(str(tmp_path / "t.db"), retention=1e9, checkpoint_samples=7)
    st.start()
    for i in range(50):
        st.append("gm", "ntp", Sample(T0 + i, 1e-9 * i, 1e-5))
    st.close()
    code, out, err = verify(tmp_path / "t.db")
    assert code == 0, err
    assert "gm (ntp): ok, 50 rows, seq 1..50" in out and "unverified tail 0 rows" in out
    code, out, err = verify(store)
    assert code == 0, err
    assert "gm (ntp): ok, 60 rows, seq 1..60" in out
    assert "unverified tail 0 rows" in out  # a clean stop writes a last checkpoint
    db = chain.open_readonly(str(store))
    res = chain.verify_store(db)
    db.close()
    assert res.ok and [s.head_seq for s in res.sources] == [N, N]


def test_chain_hash_is_the_documented_encoding(store: Path) -> None:
    """Recompute the first two links by hand from the byte layout in timemon/chain.py."""
    import hashlib
    import struct

    db = sqlite3.connect(store)
    rows = db.execute("SELECT t_ns, offset, delay, seq, hash FROM samples WHERE source_id = "
                      "(SELECT id FROM sources WHERE name = 'gm') ORDER BY seq LIMIT 2").fetchall()
    db.close()
    prev = bytes(32)
    for t_ns, offset, delay, seq, h in rows:
        msg = (b"timemon.chain.v1\x00" + prev + b"\x00\x02gm" + b"\x00\x03ntp"
               + struct.pack(">q", seq) + struct.pack(">q", t_ns) + struct.pack(">d", offset)
               + (b"\x00" + struct.pack(">d", 0.0) if delay is None
                  else b"\x01" + struct.pack(">d", delay)))
        assert hashlib.sha256(msg).digest() == h
        prev = h


@pytest.mark.parametrize("seq", [1, 17, 30, N])
@pytest.mark.parametrize("column,value", [("offset", 0.5), ("t_ns", T0 + 1), ("delay", 1e-3)])
def test_altered_row_is_named(store: Path, seq: int, column: str, value: object) -> None:
    db = sqlite3.connect(store)
    rid = row_id(db, "gm", seq)
    db.execute(f"UPDATE samples SET {column} = ? WHERE id = ?", (value, rid))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert f"source gm (ntp): altered row id {rid} (seq {seq})" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("seq", [1, 25, N - 1])
def test_deleted_row_is_named(store: Path, seq: int) -> None:
    db = sqlite3.connect(store)
    nxt = row_id(db, "gps", seq + 1)
    db.execute("DELETE FROM samples WHERE id = ?", (row_id(db, "gps", seq),))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert f"source gps (gnss): deleted row id {nxt} (seq {seq + 1}): seq {seq} missing" in err


def test_deleted_last_row_is_caught_by_the_checkpoint(store: Path) -> None:
    db = sqlite3.connect(store)
    db.execute("DELETE FROM samples WHERE id = ?", (row_id(db, "gm", N),))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert f"source gm (ntp): deleted chain (seq {N})" in err


def test_deleted_tail_after_last_checkpoint_is_only_unverified(tmp_path: Path) -> None:
    """Rows after the last checkpoint are reported, not failed (no checkpoint covers them)."""
    path = tmp_path / "s.db"
    fill(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM checkpoints WHERE id = (SELECT MAX(id) FROM checkpoints "
               "WHERE source_id = (SELECT id FROM sources WHERE name = 'gm'))")
    db.execute("DELETE FROM samples WHERE id = ?", (row_id(db, "gm", N),))
    db.commit()
    db.close()
    code, out, _ = verify(path)
    assert code == 0
    assert "gm (ntp): ok, 59 rows, seq 1..59, 2 checkpoints, unverified tail 19 rows" in out


@pytest.mark.parametrize("how", ["copy", "fresh", "bare"])
def test_inserted_row_is_named(store: Path, how: str) -> None:
    db = sqlite3.connect(store)
    sid = db.execute("SELECT id FROM sources WHERE name = 'gm'").fetchone()[0]
    # Put the new row into the middle of the chain: move rows seq >= 31 up by one id.
    target = row_id(db, "gm", 31)
    top = db.execute("SELECT MAX(id) FROM samples").fetchone()[0]
    db.execute("UPDATE samples SET id = id + ? WHERE id >= ?", (top + 1000, target))
    db.execute("UPDATE samples SET id = id - ? + 1 WHERE id > ?", (top + 1000, top))
    if how == "copy":  # a duplicate of an existing row, chain fields and all
        db.execute("INSERT INTO samples (id, source_id, t_ns, offset, delay, seq, hash) "
                   "SELECT ?, source_id, t_ns, offset, delay, seq, hash FROM samples "
                   "WHERE id = ?", (target, row_id(db, "gm", 30)))
    elif how == "fresh":  # the next seq, with a made-up hash
        db.execute("INSERT INTO samples (id, source_id, t_ns, offset, delay, seq, hash) "
                   "VALUES (?, ?, ?, 0.0, NULL, 31, ?)", (target, sid, T0 + 30_500_000_000,
                                                          bytes(32)))
    else:  # a plain insert that knows nothing of the chain
        db.execute("INSERT INTO samples (id, source_id, t_ns, offset) VALUES (?, ?, ?, 0.0)",
                   (target, sid, T0 + 30_500_000_000))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert f"source gm (ntp): inserted row id {target}" in err


def test_reordered_row_is_named(store: Path) -> None:
    db = sqlite3.connect(store)
    a, b = row_id(db, "gm", 10), row_id(db, "gm", 11)
    db.execute("UPDATE samples SET id = -1 WHERE id = ?", (a,))
    db.execute("UPDATE samples SET id = ? WHERE id = ?", (a, b))
    db.execute("UPDATE samples SET id = ? WHERE id = -1", (b,))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert f"source gm (ntp): reordered row id {a} (seq 11)" in err


def test_rewritten_chain_is_caught_by_a_checkpoint(store: Path) -> None:
    """Alter a row and recompute every later hash: only the checkpoints can tell."""
    db = sqlite3.connect(store)
    sid = db.execute("SELECT id FROM sources WHERE name = 'gm'").fetchone()[0]
    rows = db.execute("SELECT id, t_ns, offset, delay, seq FROM samples WHERE source_id = ? "
                      "ORDER BY id", (sid,)).fetchall()
    ident = chain.identity("gm", "ntp")
    prev = chain.GENESIS
    for rid, t_ns, offset, delay, seq in rows:
        if seq == 5:
            offset = 0.25
        prev = chain.link_hash(prev, ident, seq, t_ns, offset, delay)
        db.execute("UPDATE samples SET offset = ?, hash = ? WHERE id = ?", (offset, prev, rid))
    db.commit()
    db.close()
    code, _, err = verify(store)
    assert code == 1
    assert "source gm (ntp): altered chain (seq 20): checkpoint" in err


def test_signed_checkpoints(tmp_path: Path) -> None:
    priv, pub, other = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "o.pub"
    chain.generate_keypair(str(priv), str(pub))
    chain.generate_keypair(str(tmp_path / "o.pem"), str(other))
    path = tmp_path / "s.db"
    fill(path, key=chain.load_private_key(str(priv)))
    code, out, err = verify(path, "--public-key", str(pub))
    assert code == 0, err
    assert "3 checkpoints, 3 signatures good" in out
    code, _, err = verify(path, "--public-key", str(other))
    assert code == 1
    assert "signature" in err and "checkpoint #" in err
    # An unsigned store fails against any key.
    fill(tmp_path / "u.db")
    code, _, err = verify(tmp_path / "u.db", "--public-key", str(pub))
    assert code == 1 and "not signed" in err


def test_retention_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fill(path)
    db = open_database(str(path))
    deleted = SampleStore._expire(db, T0 + 25 * 10**9)
    db.close()
    assert deleted == 50
    code, out, err = verify(path)
    assert code == 0, err
    assert "gm (ntp): ok, 35 rows, seq 26..60" in out


def test_migration_chains_rows_written_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "kind TEXT NOT NULL, UNIQUE (name, kind))")
    db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, source_id INTEGER NOT NULL, "
               "t_ns INTEGER NOT NULL, offset REAL NOT NULL, delay REAL)")
    db.execute("INSERT INTO sources VALUES (1, 'gm', 'ntp')")
    db.executemany("INSERT INTO samples (source_id, t_ns, offset) VALUES (1, ?, ?)",
                   [(T0 + i, i * 1e-9) for i in range(10)])
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    st = SampleStore(str(path), retention=1e9)
    st.start()
    st.append("gm", "ntp", Sample(T0 + 10, 1e-8))
    st.close()
    code, out, err = verify(path)
    assert code == 0, err
    assert "gm (ntp): ok, 11 rows, seq 1..11" in out


def test_unreadable_files_exit_2_with_one_line(tmp_path: Path, timemon_exe: str) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    for target in (tmp_path / "missing.db", junk):
        r = subprocess.run([timemon_exe, "verify", str(target)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.startswith("timemon verify: ") and r.stderr.count("\n") == 1
    fill(tmp_path / "s.db", n=3)
    r = subprocess.run([timemon_exe, "verify", str(tmp_path / "s.db"), "--public-key",
                        str(junk)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_checkpoint_head_is_published_as_an_info_metric(tmp_path: Path) -> None:
    from conftest import find_binary
    from prometheus_client import CollectorRegistry, generate_latest

    from timemon.families import Families

    st = SampleStore(str(tmp_path / "s.db"), retention=1e9, checkpoint_samples=5)
    st.start()
    for i in range(12):
        st.append("gm", "ntp", Sample(T0 + i, 1e-9 * i))
    st.close()

    class Chain:
        def collect(self):  # type: ignore[no-untyped-def]
            out = Families()
            st.collect_chain(out)
            return iter(out)

    reg = CollectorRegistry()
    reg.register(Chain())
    text = generate_latest(reg).decode()
    db = chain.open_readonly(str(tmp_path / "s.db"))
    head = chain.verify_store(db).sources[0].head
    db.close()
    assert (f'timemon_store_checkpoint_info{{head="{head}",kind="ntp",seq="12",source="gm"}} 1.0'
            in text)
    r = subprocess.run([find_binary("promtool"), "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr



def test_the_checkpoint_text_is_kept_until_the_next_checkpoint(tmp_path: Path) -> None:
    from timemon.families import Families

    st = SampleStore(str(tmp_path / "s.db"), retention=1e9, checkpoint_samples=5)

    def scrape() -> list[str]:
        out = Families(text=True)
        st.collect_chain(out)
        return [line for line in out.render().decode().splitlines()
                if line.startswith("timemon_store_checkpoint_info{")]

    st.start()
    for i in range(5):
        st.append("gm", "ntp", Sample(T0 + i, 1e-9 * i))
    st.close()
    first = scrape()
    assert len(first) == 1 and 'seq="5"' in first[0]
    kept = st._heads_text
    assert scrape() == first and st._heads_text is kept  # no checkpoint since: reused
    st.start()
    for i in range(5, 10):
        st.append("gm", "ntp", Sample(T0 + i, 1e-9 * i))
    st.close()
    second = scrape()
    assert len(second) == 1 and 'seq="10"' in second[0] and second != first

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(["gm", "gps"]), seq=st.integers(1, N),
       column=st.sampled_from(["t_ns", "offset", "delay", "seq", "hash", "source_id"]),
       value=st.one_of(st.integers(-2**62, 2**62), st.floats(allow_nan=False), st.none(),
                       st.binary(min_size=32, max_size=32)))
def test_any_single_changed_field_is_found(store: Path, tmp_path_factory: pytest.TempPathFactory,
                                           source: str, seq: int, column: str,
                                           value: object) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.db"
    shutil.copy(store, path)
    db = sqlite3.connect(path)
    rid = row_id(db, source, seq)
    before = db.execute(f"SELECT {column} FROM samples WHERE id = ?", (rid,)).fetchone()[0]
    try:
        db.execute(f"UPDATE samples SET {column} = ? WHERE id = ?", (value, rid))
        db.commit()
    except sqlite3.IntegrityError:  # NOT NULL columns refuse None
        return
    after = db.execute(f"SELECT {column} FROM samples WHERE id = ?", (rid,)).fetchone()[0]
    db.close()
    ro = chain.open_readonly(str(path))
    result = chain.verify_store(ro)
    ro.close()
    if after == before and type(after) is type(before):
        assert result.ok
        return
    assert not result.ok
    problem = result.problems[0]
    if column != "source_id":  # a row moved to the other source breaks that chain first
        assert problem.source == source
    assert problem.row_id in (rid, None) or problem.what in ("reordered", "inserted", "deleted")
