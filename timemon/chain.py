"""The hash chain of the sample store: canonical encoding, checkpoints, signatures.

Every stored sample of a source is a link of that source's chain::

    hash_n = SHA-256( b"timemon.chain.v1\\0"
                      || hash_{n-1}                      32 bytes (32 zero bytes for n = 1)
                      || u16be(len(name)) || name        UTF-8, the configured source name
                      || u16be(len(kind)) || kind        UTF-8, "ntp", "ptp", ...
                      || i64be(seq)                      n: 1, 2, 3 ... per source
                      || i64be(t_ns)                     Unix ns of the measurement
                      || f64be(offset)                   IEEE 754 binary64, seconds (-0.0 as 0.0)
                      || u8(delay is not NULL) || f64be(delay or 0.0) )

Floats are hashed as the exact binary64 that SQLite stores (REAL), so a value
read back hashes the same.  Name and kind (not the row id of ``sources``) are
hashed, so moving rows to another source breaks the chain.

A checkpoint records a source's chain head (seq, hash) at a moment; signed
with Ed25519 (RFC 8032) over::

    b"timemon.checkpoint.v1\\0" || u16be name || u16be kind || i64be(seq) || i64be(t_ns) || head

Retention deletes a prefix of a chain (in chain order) and records the last
deleted link (seq, hash) in ``chain_anchors``; the chain restarts from there.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from dataclasses import dataclass, field
from typing import Any

CHAIN_TAG = b"timemon.chain.v1\x00"
CHECKPOINT_TAG = b"timemon.checkpoint.v1\x00"
GENESIS = bytes(32)
_LINK = struct.Struct(">qqdBd")
_pack = _LINK.pack
_sha256 = hashlib.sha256


class SigningError(Exception):
    """A key file cannot be read or is not an Ed25519 key."""


def identity(name: str, kind: str) -> bytes:
    """The length-prefixed source identity that every link and checkpoint hashes."""
    n = name.encode("utf-8")
    k = kind.encode("utf-8")
    return struct.pack(">H", len(n)) + n + struct.pack(">H", len(k)) + k


def link_hash(prev: bytes, ident: bytes, seq: int, t_ns: int, offset: float,
              delay: float | None) -> bytes:
    # "+ 0.0" turns -0.0 into 0.0: SQLite stores a REAL -0.0 as 0.0.
    body = _pack(seq, t_ns, offset + 0.0, 0 if delay is None else 1,
                 0.0 if delay is None else delay + 0.0)
    return _sha256(b"".join((CHAIN_TAG, prev, ident, body))).digest()


def checkpoint_message(ident: bytes, seq: int, t_ns: int, head: bytes) -> bytes:
    return CHECKPOINT_TAG + ident + struct.pack(">qq", seq, t_ns) + head


# -- Ed25519 keys (the ``cryptography`` library) -------------------------------


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningError("signing needs the cryptography library "
                           "(a dependency of timemon): pip install cryptography") from None
    return serialization, ed25519


def load_private_key(path: str) -> Any:
    serialization, ed25519 = _crypto()
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as exc:
        raise SigningError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: str) -> Any:
    serialization, ed25519 = _crypto()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key")
    return key


def generate_keypair(private_path: str, public_path: str) -> None:
    """Write a new Ed25519 key pair as PEM (PKCS#8 private, SubjectPublicKeyInfo public)."""
    serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import os

    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(public_path, "wb") as f:
        f.write(public)


def key_id(public_key: Any) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- verification -------------------------------------------------------------


@dataclass
class Problem:
    """The first break found in a source's chain."""

    source: str
    kind: str
    what: str  # altered | inserted | deleted | reordered | checkpoint | signature
    row_id: int | None
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f"row id {self.row_id}" if self.row_id is not None else "chain"
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"source {self.source} ({self.kind}): {self.what} {where}{seq}: {self.detail}"


@dataclass
class SourceResult:
    source: str
    kind: str
    rows: int = 0
    first_seq: int = 0  # chain position of the first kept row (after retention)
    head_seq: int = 0
    head: str = ""
    checkpoints: int = 0
    signed_checkpoints: int = 0
    verified_seq: int = 0  # rows up to here are covered by a matching checkpoint
    unverified_tail: int = 0
    problem: Problem | None = None


@dataclass
class VerifyResult:
    sources: list[SourceResult] = field(default_factory=list)
    signatures_checked: bool = False

    @property
    def problems(self) -> list[Problem]:
        return [s.problem for s in self.sources if s.problem is not None]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "signatures_checked": self.signatures_checked,
            "sources": [
                {k: (str(v) if isinstance(v, Problem) else v) for k, v in vars(s).items()}
                for s in self.sources
            ],
        }


class StoreUnreadable(Exception):
    """The file is not a readable timemon store (missing, not SQLite, no chain)."""


def open_readonly(path: str) -> sqlite3.Connection:
    """Open a store for reading without creating or migrating it."""
    import os

    if not os.path.isfile(path):
        raise StoreUnreadable(f"{path}: no such file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute("SELECT count(*) FROM sources").fetchone()
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"{path}: not a readable timemon store ({exc})") from None
    if version < 2:
        db.close()
        raise StoreUnreadable(f"{path}: schema version {version} has no hash chain "
                              "(the agent adds it when it next opens the store)")
    # One read transaction: a snapshot, so rows and checkpoints that a running agent
    # writes meanwhile are seen together or not at all (WAL readers do not block it).
    db.isolation_level = None
    db.execute("BEGIN")
    db.execute("SELECT count(*) FROM checkpoints").fetchone()
    return db


def _link_or_none(prev: bytes, ident: bytes, seq: int, t_ns: Any, offset: Any,
                  delay: Any) -> bytes | None:
    """The link hash, or None when a field has a type no writer stores (so: altered)."""
    try:
        return link_hash(prev, ident, seq, t_ns, offset, delay)
    except (struct.error, TypeError, OverflowError):
        return None


def _walk(db: sqlite3.Connection, sid: int, res: SourceResult, ident: bytes,
          anchor: tuple[int, bytes] | None) -> dict[int, bytes]:
    """Follow one chain in insertion order; returns seq -> hash of the verified links."""
    seq0, prev = anchor if anchor else (0, GENESIS)
    res.first_seq = seq0 + 1
    expected = seq0 + 1
    hashes: dict[int, bytes] = {seq0: prev} if anchor else {}
    rows = db.execute("SELECT id, t_ns, offset, delay, seq, hash FROM samples "
                      "WHERE source_id = ? ORDER BY id", (sid,)).fetchall()
    res.rows = len(rows)
    present = {r[4] for r in rows if type(r[4]) is int}
    for i, (rid, t_ns, offset, delay, seq, h) in enumerate(rows):
        if seq is None or h is None:
            res.problem = Problem(res.source, res.kind, "inserted", rid, seq,
                                  "a row without chain fields")
            break
        if type(seq) is not int:
            res.problem = Problem(res.source, res.kind, "altered", rid, None,
                                  f"seq is {seq!r}, not an integer")
            break
        if seq == expected:
            good = _link_or_none(prev, ident, seq, t_ns, offset, delay)
            if h != good:
                nxt = rows[i + 1] if i + 1 < len(rows) else None
                if nxt is not None and nxt[4] == seq and nxt[5] == _link_or_none(
                        prev, ident, seq, nxt[1], nxt[2], nxt[3]):
                    res.problem = Problem(res.source, res.kind, "inserted", rid, seq,
                                          f"a row not in the chain, before row id {nxt[0]}")
                else:
                    res.problem = Problem(res.source, res.kind, "altered", rid, seq,
                                          "content does not match its hash")
                break
            hashes[seq] = h
            prev = h
            expected += 1
            continue
        if seq > expected:
            if expected in present:
                res.problem = Problem(res.source, res.kind, "reordered", rid, seq,
                                      f"comes before the row of seq {expected}")
            else:
                missing = (f"seq {expected}" if seq == expected + 1
                           else f"seq {expected}..{seq - 1}")
                res.problem = Problem(res.source, res.kind, "deleted", rid, seq,
                                      f"{missing} missing just before this row")
        else:
            res.problem = Problem(res.source, res.kind, "inserted", rid, seq,
                                  f"seq {seq} repeats or goes back (expected {expected})")
        break
    res.head_seq = expected - 1
    res.head = prev.hex()
    return hashes


def verify_store(db: sqlite3.Connection, public_key: Any = None) -> VerifyResult:
    """Walk every chain and check it against the checkpoints (and their signatures)."""
    out = VerifyResult(signatures_checked=public_key is not None)
    sources = db.execute("SELECT id, name, kind FROM sources ORDER BY id").fetchall()
    known = {r[0] for r in sources}
    for (sid,) in db.execute("SELECT DISTINCT source_id FROM samples"):
        if sid not in known:
            sources.append((sid, f"#{sid}", "?"))
    anchors = {r[0]: (r[1], r[2]) for r in
               db.execute("SELECT source_id, seq, hash FROM chain_anchors")}
    for sid, name, kind in sources:
        res = SourceResult(name, kind)
        out.sources.append(res)
        ident = identity(name, kind)
        anchor = anchors.get(sid)
        hashes = _walk(db, sid, res, ident, anchor)
        walked_to = res.head_seq
        pruned_to = anchor[0] if anchor else 0
        for cid, t_ns, seq, head, sig in db.execute(
                "SELECT id, t_ns, seq, head, signature FROM checkpoints WHERE source_id = ? "
                "ORDER BY id", (sid,)).fetchall():
            res.checkpoints += 1
            if public_key is not None and res.problem is None:
                try:
                    if sig is None:
                        raise ValueError("not signed")
                    public_key.verify(sig, checkpoint_message(ident, seq, t_ns, head))
                except Exception as exc:  # cryptography's InvalidSignature, or unsigned
                    why = str(exc) or "signature does not verify with the given public key"
                    res.problem = Problem(name, kind, "signature", None, seq,
                                          f"checkpoint #{cid}: {why}")
                    continue
                res.signed_checkpoints += 1
            if res.problem is not None or seq < pruned_to:
                continue  # a checkpoint of rows that retention has removed
            if seq > walked_to:
                res.problem = Problem(
                    name, kind, "deleted", None, walked_to + 1,
                    f"checkpoint #{cid} has the chain at seq {seq}, the store ends at "
                    f"seq {walked_to}: rows seq {walked_to + 1}..{seq} are missing")
            elif hashes.get(seq) != head:
                res.problem = Problem(
                    name, kind, "altered", None, seq,
                    f"checkpoint #{cid}: the chain was rewritten at or before seq {seq}")
            else:
                res.verified_seq = max(res.verified_seq, seq)
        if res.problem is None:
            res.unverified_tail = res.head_seq - max(res.verified_seq, pruned_to)
    return out
