"""Write speed of the sample store: the schema-1 write path against the hash-chained one.

Both go through SampleStore's writer (``_flush`` on batches, as the writer thread
does); "old" replays the pre-chain INSERT of four columns, "new" is the current
code (SHA-256 link per row, checkpoints).  Prints samples/s and the ratio.

    .venv/bin/python bench/store_write.py [--samples 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from timemon.source import Sample
from timemon.store import SampleStore, _Pending


class OldStore(SampleStore):
    """The write path before the chain (timemon/store.py at schema version 1)."""

    def _flush(self, final: bool = False) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        rows = [(self._source_id(db, p.name, p.kind), p.sample.t_ns, p.sample.offset,
                 p.sample.delay) for p in self._backlog]
        db.executemany("INSERT INTO samples (source_id, t_ns, offset, delay) VALUES (?, ?, ?, ?)",
                       rows)
        db.execute("COMMIT")
        self.written += len(self._backlog)
        self._backlog.clear()


def run(cls: type[SampleStore], n: int, batch: int, directory: str) -> float:
    path = os.path.join(directory, f"{cls.__name__}.db")
    st = cls(path, retention=1e9)
    items = [_Pending(f"src{i % 4}", "ntp", Sample(1_800_000_000_000_000_000 + i, i * 1e-9, 2e-5))
             for i in range(n)]
    st._connect()
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        st._backlog.extend(items[i:i + batch])
        st._flush()
    st._flush(final=True)
    elapsed = time.perf_counter() - t0
    assert st.written == n
    if st._db is not None:
        st._db.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000, help="samples per transaction")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        old = max(run(OldStore, args.samples, args.batch, d + f"/o{k}") for k in range(3)
                  if not os.makedirs(d + f"/o{k}"))
        new = max(run(SampleStore, args.samples, args.batch, d + f"/n{k}") for k in range(3)
                  if not os.makedirs(d + f"/n{k}"))
    print(f"old (no chain): {old:12,.0f} samples/s")
    print(f"new (chained):  {new:12,.0f} samples/s")
    print(f"ratio new/old:  {new / old:.2f}")


if __name__ == "__main__":
    main()
