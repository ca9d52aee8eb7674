"""``timemon verify STORE``: check the hash chain of a sample store (timemon/chain.py).

Exit 0: every chain intact (rows after the last checkpoint are reported as an
unverified tail, not a failure); 1: the first altered, inserted, deleted or
reordered row, or a bad checkpoint signature, named with its source; 2: the
file or key cannot be read.
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from timemon.chain import (
    SigningError,
    StoreUnreadable,
    load_public_key,
    open_readonly,
    verify_store,
)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"timemon verify: {message}", err=True)
    sys.exit(code)


@click.command("verify")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--public-key", "public_key_path", type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM): every checkpoint must carry a valid signature.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def verify(store: str, public_key_path: str | None, as_json: bool) -> None:
    """Check that the samples in STORE are as they were written.

    Walks each source's hash chain and compares it with the checkpoints.
    Exits 1 naming the first altered, inserted, deleted or reordered row.
    """
    try:
        key = load_public_key(public_key_path) if public_key_path else None
    except SigningError as exc:
        _fail(str(exc), 2)
    try:
        db = open_readonly(store)
    except StoreUnreadable as exc:
        _fail(str(exc), 2)
    try:
        result = verify_store(db, key)
    except Exception as exc:  # sqlite3.Error on a damaged file, a table dropped, ...
        _fail(f"{store}: cannot read the chain ({type(exc).__name__}: {exc})", 2)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        for s in result.sources:
            state = "BROKEN" if s.problem else "ok"
            signed = (f", {s.signed_checkpoints} signatures good"
                      if result.signatures_checked else "")
            click.echo(f"{s.source} ({s.kind}): {state}, {s.rows} rows, seq {s.first_seq}.."
                       f"{s.head_seq}, {s.checkpoints} checkpoints{signed}, "
                       f"unverified tail {s.unverified_tail} rows, head {s.head[:16]}")
        if not result.signatures_checked:
            click.echo("checkpoint signatures not checked (no --public-key)")
    problems = result.problems
    if problems:
        _fail(f"{store}: {problems[0]}", 1)
