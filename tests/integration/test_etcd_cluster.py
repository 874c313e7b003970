"""The store on a three-member etcd cluster (`etcd://IP:PORT,IP:PORT,IP:PORT`): reads, writes, watches and leases go
on while any one member is down, and a member brought back rejoins."""

from __future__ import annotations

import asyncio

import pytest
from etcd_process import EtcdCluster
from waiting import async_assert_eventually as until

from gateway._leader import Election
from gateway.store import EventType, open_store

pytestmark = pytest.mark.timeout(120)


async def test_the_store_outlives_any_one_member(etcd_cluster: EtcdCluster) -> None:
    store = await open_store(etcd_cluster.url)
    seen: list[str] = []

    async def watch() -> None:
        async for batch in store.watch("/t/", 1):
            seen.extend(e.key for e in batch if e.type is EventType.PUT)

    watcher = asyncio.create_task(watch())
    led: list[int] = []

    async def lead(term: int) -> None:
        led.append(term)
        await asyncio.Event().wait()

    election = asyncio.create_task(Election(store, "r1", lead, ttl=2.0).run())
    try:
        for round_, member in enumerate(etcd_cluster.members):
            member.kill()
            # Every write is acknowledged by the two members left (a quorum) ...
            key = f"/t/{round_}"
            async with asyncio.timeout(30):
                while True:
                    try:
                        await store.put(key, b"x")
                        break
                    except Exception:
                        await asyncio.sleep(0.1)
            assert (await store.get(key)) is not None
            # ... and the watch, on whichever member, delivers it.
            await until(lambda key=key: key in seen, within=30)
            await asyncio.to_thread(member.start, within=30)
        # One replica kept (or regained) the lead through every member's loss (on a loaded machine its first campaign
        # may still be under way when the last member is back).
        await until(lambda: bool(led), within=30)
        assert election.done() is False
    finally:
        election.cancel()
        watcher.cancel()
        await asyncio.gather(election, watcher, return_exceptions=True)
        await store.close()


async def test_several_members_by_host_name_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="IP addresses"):
        await open_store("etcd://etcd-0.example:2379,etcd-1.example:2379")
    with pytest.raises(ValueError, match="is not etcd://HOST:PORT"):
        await open_store("etcd://10.0.0.1:2379,10.0.0.2")
