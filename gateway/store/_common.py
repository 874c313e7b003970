"""Checks and key arithmetic shared by the store implementations, so both refuse the same transactions."""

from __future__ import annotations

from collections.abc import Sequence

from ._protocol import MAX_TXN_OPS, Compare, InvalidTxn, Op, Put


def check_txn(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    """Refuse what etcd refuses (per-branch op limit, a key written twice in one branch) before anything is written."""
    for name, items in (("compares", compares), ("success operations", success), ("failure operations", failure)):
        if len(items) > MAX_TXN_OPS:
            raise InvalidTxn(f"too many {name} in one transaction: {len(items)} > {MAX_TXN_OPS}")
    for branch in (success, failure):
        written: set[str] = set()
        for op in branch:
            if op.key in written:
                kind = "put" if isinstance(op, Put) else "delete"
                raise InvalidTxn(f"key {op.key!r} is written twice in one transaction (second write: {kind})")
            written.add(op.key)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix`; None when there is none (all 0xff bytes)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None
