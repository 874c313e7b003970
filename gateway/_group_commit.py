"""Group commit: concurrent compare-and-swaps on distinct keys share one store transaction.

Every acknowledged write must be durable, and a durable commit costs an fsync (SQLite) or a raft round (etcd).
While one commit is in flight, the transactions that arrive queue up; the next commit takes as many of them as fit
in one transaction (etcd's 128 compares and 128 operations, keys disjoint) and applies them together. If the
combined transaction fails, some compare lost a race: the batch is retried one by one, so each caller gets
exactly the answer it would have had alone. An idle gateway commits at once: nothing waits to form a batch.
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
    future: asyncio.Future[TxnResult]

    def keys(self) -> set[str]:
        return {c.key for c in self.compares} | {o.key for o in self.ops if isinstance(o, (Put, Delete))}


class GroupCommit:
    def __init__(self, store: Store):
        self._store = store
        self._queue: list[_Pending] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        future: asyncio.Future[TxnResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(compares, ops, future))
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
            result = await self._store.txn([c for p in batch for c in p.compares], [o for p in batch for o in p.ops])
            if result.succeeded:
                for pending in batch:
                    current = {c.key: result.current.get(c.key) for c in pending.compares}
                    pending.future.set_result(TxnResult(True, result.revision, current))
                return
        for pending in batch:
            pending.future.set_result(await self._store.txn(pending.compares, pending.ops))
