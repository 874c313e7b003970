"""Group commit: concurrent compare-and-swaps on distinct keys share one store transaction.

A durable commit costs an fsync (SQLite) or a raft round (etcd). While one commit is in flight, the transactions
that arrive queue up; the next commit takes as many of them as fit in one transaction (etcd's 128 compares and 128
operations, keys disjoint) and applies them together. If the combined transaction fails, some compare lost a race:
the batch is retried one by one, so each caller gets exactly the answer it would have had alone. An idle gateway
commits at once: nothing waits to form a batch.

A transaction may be marked `durable=False` (a write recovery can rebuild, `gateway.store`); a merged batch is
durable if any of its transactions is, so a durable caller never waits on less than an fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store import MAX_TXN_OPS, Compare, Delete, Op, Put, Store, TxnResult


@dataclass
class _Pending:
    compares: Sequence[Compare]
    ops: Sequence[Op]
    durable: bool
    future: asyncio.Future[TxnResult]

    def keys(self) -> set[str]:
        return {c.key for c in self.compares} | {o.key for o in self.ops if isinstance(o, (Put, Delete))}


class GroupCommit:
    def __init__(self, store: Store):
        self._store = store
        self._queue: list[_Pending] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op], *, durable: bool = True) -> TxnResult:
        future: asyncio.Future[TxnResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(compares, ops, durable, future))
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    await self._commit(batch)
                except Exception as error:
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(error)
        finally:
            self._draining = False

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        keys: set[str] = set()
        compares = ops = 0
        rest: list[_Pending] = []
        for pending in self._queue:
            fits = compares + len(pending.compares) <= MAX_TXN_OPS and ops + len(pending.ops) <= MAX_TXN_OPS
            if batch and not fits:
                # Its keys are not worth a look: a fan-out queues thousands behind one full batch.
                rest.append(pending)
                continue
            mine = pending.keys()
            if batch and keys & mine:
                rest.append(pending)
                continue
            batch.append(pending)
            keys |= mine
            compares += len(pending.compares)
            ops += len(pending.ops)
        self._queue = rest
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        if len(batch) > 1:
            compares, ops = [c for p in batch for c in p.compares], [o for p in batch for o in p.ops]
            result = await self._store.txn(compares, ops, durable=any(p.durable for p in batch))
            if result.succeeded:
                for pending in batch:
                    current = {c.key: result.current.get(c.key) for c in pending.compares}
                    pending.future.set_result(TxnResult(True, result.revision, current))
                return
        for pending in batch:
            pending.future.set_result(await self._store.txn(pending.compares, pending.ops, durable=pending.durable))
