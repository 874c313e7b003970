"""Leader election among gateway replicas: one leads, a resignation or an expired lease hands over, and a deposed
leader's writes are refused by its fence. On the embedded store and on a real etcd (the store the replicas share)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from etcd_process import EtcdProcess
from waiting import async_assert_eventually as until

from gateway._keys import LEADER_KEY
from gateway._leader import Election, NotLeader, current_leader
from gateway.store import Put, Store, open_store

TTL = 1.0


class Replica:
    """One replica's election and a record of the terms it led (and whether each ended)."""

    def __init__(self, store: Store, name: str, **options: object):
        self.name = name
        self.led: list[int] = []
        self.ended: list[int] = []
        self.election = Election(store, name, self._lead, ttl=TTL, **options)  # type: ignore[arg-type]
        self.task: asyncio.Task[None] | None = None

    async def _lead(self, term: int) -> None:
        self.led.append(term)
        try:
            await asyncio.Event().wait()
        finally:
            self.ended.append(term)

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.election.run(), name=f"election-{self.name}")
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture(params=["memory", "etcd"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = "memory" if request.param == "memory" else request.getfixturevalue("etcd_fresh").url
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_one_replica_leads_and_a_resignation_hands_over_at_once(store: Store) -> None:
    a, b = Replica(store, "a").start(), Replica(store, "b").start()
    try:
        await until(lambda: bool(a.led or b.led))
        leader, follower = (a, b) if a.led else (b, a)
        assert not follower.led
        assert not follower.election.leading
        info = await current_leader(store)
        assert info is not None
        assert (info.replica, info.term) == (leader.name, leader.led[0])
        loop = asyncio.get_running_loop()
        resigned_at = loop.time()
        await leader.stop()
        assert leader.ended == leader.led  # its work was cancelled with its term
        await until(lambda: bool(follower.led))
        # A resignation revokes the lease: the follower takes over without waiting out a TTL.
        assert loop.time() - resigned_at < TTL
        assert follower.led[0] > leader.led[0]  # terms only grow
    finally:
        for replica in (a, b):
            await replica.stop()


async def test_a_deposed_leaders_writes_are_fenced_and_it_steps_down(store: Store) -> None:
    a = Replica(store, "a").start()
    b: Replica | None = None
    try:
        await until(lambda: bool(a.led))
        old_fence = a.election.fence()
        # A's lease ends behind its back, as when it was paused past its TTL.
        current = await store.get(LEADER_KEY)
        assert current is not None
        await store.revoke(current.lease)
        b = Replica(store, "b").start()
        await until(lambda: bool(b.led))
        refused = await store.txn([old_fence], [Put("/flyte/test/placed", b"by the old leader")], [])
        assert not refused.succeeded
        assert await store.get("/flyte/test/placed") is None
        # At its next renewal A learns it lost the lease, and its work stops.
        await until(lambda: a.ended == a.led and not a.election.leading, within=TTL * 3)
        with pytest.raises(NotLeader):
            a.election.fence()
        accepted = await store.txn([b.election.fence()], [Put("/flyte/test/placed", b"by the leader")], [])
        assert accepted.succeeded
    finally:
        await a.stop()
        if b is not None:
            await b.stop()


async def test_a_leader_cut_off_from_the_store_stops_leading_within_its_ttl(etcd_fresh: EtcdProcess) -> None:
    store = await open_store(etcd_fresh.url)
    a = Replica(store, "a").start()
    try:
        await until(lambda: bool(a.led))
        etcd_fresh.pause()
        try:
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            # Without an answer it cannot know whether its lease lives: it stops acting by its own clock.
            await until(lambda: not a.election.leading, within=TTL * 4)
            assert a.ended == a.led
            assert loop.time() - cut_at <= TTL + TTL / 3 + 0.5
        finally:
            etcd_fresh.resume()
    finally:
        await a.stop()
        await store.close()


def test_a_ttl_must_be_positive() -> None:
    async def nothing(term: int) -> None:
        return None

    with pytest.raises(ValueError, match="positive TTL"):
        Election(object(), "a", nothing, ttl=0)  # type: ignore[arg-type]
