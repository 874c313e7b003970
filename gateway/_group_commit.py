"""Group commit: concurrent compare-and-swaps on distinct keys share one store transaction.

A durable commit costs an fsync (SQLite) or a raft round (etcd). While one commit is in flight, the transactions
that arrive queue up; the next commit takes as many of them as fit in one transaction (etcd's 128 compares and 128
operations) and touch no key another of them writes, and applies them together. Transactions that only compare the
same key against the same revision do not collide: every placement a leader writes compares its term's key
(`Election.fence`), and a pass's placements share a commit, with that compare made once.

If the combined transaction fails, some compare lost a race: nothing was written, and the store said what each
compared key holds. A transaction whose compares fail against that is answered as it would have been alone; the
rest go again together (one by one if none can be blamed), so each caller gets exactly the answer it would have had
alone, and one stale compare does not cost its batch a commit each. An idle gateway commits at once: nothing waits
to form a batch. A transaction that is all its caller has to write (`alone`: an attempt's end, a submission of one
child) is then committed in the caller's own task, without the drainer's task and the two turns of the loop it takes
to start and to answer: a chain call's two commits (bench/calls.py: 2,484 -> 2,373 gateway calls per chain call).
Callers that start several at once (a placement pass, a fan-out's submission) leave them to the drainer, which
finds them all queued and commits them together.

A transaction may be marked `durable=False` (a write recovery can rebuild, `gateway.store`); a merged batch is
durable if any of its transactions is, so a durable caller never waits on less than an fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store import MAX_TXN_OPS, Compare, Delete, KeyValue, Op, Put, Store, TxnResult


@dataclass
class _Pending:
    compares: Sequence[Compare]
    ops: Sequence[Op]
    durable: bool
    future: asyncio.Future[TxnResult]

    def answer(self, result: TxnResult) -> None:
        """Answer the caller, unless it was cancelled meanwhile (its socket closed): its write still went with its
        batch, and answering a cancelled future would raise, and fail the rest of the batch with it."""
        if not self.future.done():
            self.future.set_result(result)

    def written(self) -> set[str]:
        return {o.key for o in self.ops if isinstance(o, (Put, Delete))}

    def compared_only(self, written: set[str]) -> dict[str, int]:
        """The keys this transaction compares and does not write, with the revision each must have."""
        return {c.key: c.mod_revision for c in self.compares if c.key not in written}


class GroupCommit:
    def __init__(self, store: Store):
        self._store = store
        self._queue: list[_Pending] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None

    async def txn(
        self, compares: Sequence[Compare], ops: Sequence[Op], *, durable: bool = True, alone: bool = False
    ) -> TxnResult:
        """`alone`: the caller starts no other transaction with this one (see the module's docstring)."""
        if alone and not self._draining:
            return await self._at_once(compares, ops, durable)
        future: asyncio.Future[TxnResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(compares, ops, durable, future))
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _at_once(self, compares: Sequence[Compare], ops: Sequence[Op], durable: bool) -> TxnResult:
        """Nothing in flight: commit in the caller's task. What others start meanwhile queues for the drainer."""
        self._draining = True
        try:
            return await self._store.txn(compares, ops, durable=durable)
        finally:
            if self._queue:
                self._drainer = asyncio.create_task(self._drain())
            else:
                self._draining = False

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
        written: set[str] = set()
        """Keys a transaction of the batch writes, or compares and writes."""
        compared: dict[str, int] = {}
        """Keys transactions of the batch only compare, with the revision they expect."""
        compares: set[tuple[str, int]] = set()
        ops = 0
        rest: list[_Pending] = []
        queue = self._queue
        for taken, pending in enumerate(queue):
            theirs = {(c.key, c.mod_revision) for c in pending.compares}
            fits = len(compares | theirs) <= MAX_TXN_OPS and ops + len(pending.ops) <= MAX_TXN_OPS
            if batch and not fits:
                # The batch is full: a fan-out queues thousands behind it, and looking at each of them for every
                # batch made draining the queue quadratic. They keep their order for the next batches.
                rest.extend(queue[taken:])
                break
            mine = pending.written()
            reads = pending.compared_only(mine)
            collides = (
                not mine.isdisjoint(written)
                or not mine.isdisjoint(compared)
                or not reads.keys().isdisjoint(written)
                or any(compared.get(key, revision) != revision for key, revision in reads.items())
            )
            if batch and collides:
                rest.append(pending)
                continue
            batch.append(pending)
            written |= mine
            compared.update(reads)
            compares |= theirs
            ops += len(pending.ops)
        self._queue = rest
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        while len(batch) > 1:
            # A compare several transactions share (the leader's term) is made once.
            compares = list({(c.key, c.mod_revision): c for p in batch for c in p.compares}.values())
            ops = [o for p in batch for o in p.ops]
            result = await self._store.txn(compares, ops, durable=any(p.durable for p in batch))
            if result.succeeded:
                for pending in batch:
                    current = {c.key: result.current.get(c.key) for c in pending.compares}
                    pending.answer(TxnResult(True, result.revision, current))
                return
            # Nothing was written. A transaction whose own compares fail against what the store holds gets the
            # answer it would have had alone; the others, whose compares all held, go again together.
            held: list[_Pending] = []
            for pending in batch:
                current = {c.key: result.current.get(c.key) for c in pending.compares}
                if all(_revision(current[c.key]) == c.mod_revision for c in pending.compares):
                    held.append(pending)
                else:
                    pending.answer(TxnResult(False, result.revision, current))
            if len(held) == len(batch):
                break  # no compare to blame (the store moved on meanwhile): one by one
            batch = held
        for pending in batch:
            pending.answer(await self._store.txn(pending.compares, pending.ops, durable=pending.durable))


def _revision(kv: KeyValue | None) -> int:
    return kv.mod_revision if kv is not None else 0
