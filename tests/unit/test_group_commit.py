"""Group commit (`gateway._group_commit`) on the in-memory store: concurrent compare-and-swaps on distinct keys share
one store transaction, and each caller still gets exactly the answer it would have had alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway._group_commit import GroupCommit
from gateway.store import Compare, Op, Put, Store, TxnResult, open_store
from gateway.store._sqlite import SqliteStore


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    store = await open_store("memory")
    yield store
    await store.close()


async def test_concurrent_writes_share_a_transaction(store: Store) -> None:
    commit = GroupCommit(store)
    before = await store.revision()
    results = await asyncio.gather(*(commit.txn([Compare(f"/k{i}", 0)], [Put(f"/k{i}", b"v")]) for i in range(50)))
    assert all(r.succeeded for r in results)
    # All arrived before the first commit started: one store transaction (one revision) for the 50.
    assert await store.revision() == before + 1
    assert len((await store.range("/k"))[0]) == 50


async def test_a_lost_compare_fails_only_its_own_caller(store: Store) -> None:
    await store.put("/taken", b"old")
    commit = GroupCommit(store)
    first, lost, third = await asyncio.gather(
        commit.txn([Compare("/a", 0)], [Put("/a", b"v")]),
        commit.txn([Compare("/taken", 0)], [Put("/taken", b"new")]),
        commit.txn([Compare("/c", 0)], [Put("/c", b"v")]),
    )
    assert first.succeeded
    assert third.succeeded
    assert not lost.succeeded
    taken = await store.get("/taken")
    assert taken is not None
    assert taken.value == b"old"
    assert lost.current["/taken"] == taken


async def test_writes_to_one_key_are_never_batched_together(store: Store) -> None:
    commit = GroupCommit(store)
    results = await asyncio.gather(
        *(commit.txn([Compare("/one", 0)], [Put("/one", str(i).encode())]) for i in range(3))
    )
    assert [r.succeeded for r in results] == [True, False, False]  # each saw the one before it


async def test_writes_that_compare_one_unwritten_key_alike_share_a_transaction(store: Store) -> None:
    # The leader's placements: each compares its term's key, which none of them writes.
    await store.put("/leader", b"me")
    term = await store.revision()
    commit = GroupCommit(store)
    results = await asyncio.gather(
        *(commit.txn([Compare(f"/p{i}", 0), Compare("/leader", term)], [Put(f"/p{i}", b"v")]) for i in range(40))
    )
    assert all(r.succeeded for r in results)
    assert await store.revision() == term + 1
    assert all(r.current["/leader"] is not None for r in results)


async def test_a_term_that_ended_fails_every_write_it_fences_and_no_other(store: Store) -> None:
    await store.put("/leader", b"me")
    old_term = await store.revision()
    await store.put("/leader", b"another")
    commit = GroupCommit(store)
    fenced, free = await asyncio.gather(
        commit.txn([Compare("/p", 0), Compare("/leader", old_term)], [Put("/p", b"v")]),
        commit.txn([Compare("/q", 0)], [Put("/q", b"v")]),
    )
    assert not fenced.succeeded
    assert free.succeeded
    assert await store.get("/p") is None


async def test_a_write_is_not_batched_with_one_that_compares_the_key_it_writes(store: Store) -> None:
    await store.put("/leader", b"me")
    term = await store.revision()
    commit = GroupCommit(store)
    fenced, deposed = await asyncio.gather(
        commit.txn([Compare("/p", 0), Compare("/leader", term)], [Put("/p", b"v")]),
        commit.txn([Compare("/leader", term)], [Put("/leader", b"another")]),
    )
    # In one transaction both compares would hold against the old term; apart, each sees the one before it.
    assert fenced.succeeded
    assert deposed.succeeded
    assert await store.revision() == term + 2


async def test_a_stale_compare_fails_alone_and_the_rest_of_its_batch_still_shares_one_commit() -> None:
    store = _Recording()
    try:
        await store.put("/taken", b"old")
        commit = GroupCommit(store)
        results = await asyncio.gather(
            commit.txn([Compare("/taken", 0)], [Put("/taken", b"new")]),
            *(commit.txn([Compare(f"/k{i}", 0)], [Put(f"/k{i}", b"v")]) for i in range(20)),
        )
        assert not results[0].succeeded
        assert all(r.succeeded for r in results[1:])
        # The merged try, then the 20 whose compares held, together: not 21 commits.
        assert len(store.durable) == 2
        assert (await store.get("/taken")) is not None
    finally:
        await store.close()


class _Recording(SqliteStore):
    """The in-memory store, noting whether each transaction it commits asks to be durable."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.durable: list[bool] = []
        self.tasks: list[asyncio.Task[object] | None] = []

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *, durable: bool = True
    ) -> TxnResult:
        self.durable.append(durable)
        self.tasks.append(asyncio.current_task())
        return await super().txn(compares, success, failure, durable=durable)


async def test_a_batch_is_durable_when_any_of_its_transactions_is() -> None:
    store = _Recording()
    try:
        commit = GroupCommit(store)
        marks = [commit.txn([Compare(f"/m{i}", 0)], [Put(f"/m{i}", b"v")], durable=False) for i in range(3)]
        await asyncio.gather(*marks)
        assert store.durable == [False]
        mixed = [commit.txn([Compare(f"/n{i}", 0)], [Put(f"/n{i}", b"v")], durable=i != 1) for i in range(3)]
        mixed.append(commit.txn([Compare("/n3", 0)], [Put("/n3", b"v")], durable=False))
        await asyncio.gather(*mixed)
        assert store.durable == [False, True]
        # A batch that lost a race: the loser is answered without a commit of its own, and the rest go again, as
        # durable as their callers asked.
        await store.put("/taken", b"old")
        lost = [
            commit.txn([Compare("/taken", 0)], [Put("/taken", b"new")]),
            commit.txn([Compare("/free", 0)], [Put("/free", b"v")], durable=False),
        ]
        await asyncio.gather(*lost)
        assert store.durable[2:] == [True, False]
    finally:
        await store.close()


async def test_a_caller_cancelled_while_queued_leaves_the_rest_of_its_batch_answered(store: Store) -> None:
    # A worker's socket that closes cancels its handlers; one of them may be waiting in a batch with other workers'
    # writes, which are committed with it and must still be answered as committed.
    commit = GroupCommit(store)
    callers = [asyncio.create_task(commit.txn([Compare(f"/q{i}", 0)], [Put(f"/q{i}", b"v")])) for i in range(3)]
    await asyncio.sleep(0)  # all three queued; the batch has not been committed yet
    callers[1].cancel()
    first, _, third = await asyncio.gather(*callers, return_exceptions=True)
    for answer in (first, third):
        assert isinstance(answer, TxnResult), answer
        assert answer.succeeded
    assert callers[1].cancelled()
    assert len((await store.range("/q"))[0]) == 3  # the cancelled caller's write went with its batch


async def test_a_lone_write_with_nothing_in_flight_is_committed_in_its_callers_task() -> None:
    # A chain call's two commits each took the drainer's task and two turns of the loop (to start it, to answer).
    store = _Recording()
    try:
        commit = GroupCommit(store)
        assert (await commit.txn([Compare("/a", 0)], [Put("/a", b"v")], alone=True)).succeeded
        assert store.tasks == [asyncio.current_task()]
        # Writes started meanwhile queue behind it and go together, in the drainer's task.
        results = await asyncio.gather(
            commit.txn([Compare("/b", 0)], [Put("/b", b"v")], alone=True),
            *(commit.txn([Compare(f"/c{i}", 0)], [Put(f"/c{i}", b"v")]) for i in range(3)),
        )
        assert all(r.succeeded for r in results)
        assert len(store.tasks) == 3
        assert store.tasks[2] is not store.tasks[1]
        # While a commit is in flight a lone write queues too: it shares the drainer's next commit.
        first = asyncio.create_task(commit.txn([Compare("/d", 0)], [Put("/d", b"v")]))
        second = asyncio.create_task(commit.txn([Compare("/e", 0)], [Put("/e", b"v")]))
        await asyncio.sleep(0)  # both queued, the drainer started: the lone write finds it in flight
        lone = await commit.txn([Compare("/f", 0)], [Put("/f", b"v")], alone=True)
        assert lone.succeeded
        await asyncio.gather(first, second)
        assert store.tasks[-1] is not asyncio.current_task()
    finally:
        await store.close()
