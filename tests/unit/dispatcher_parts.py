"""What the dispatcher parts' unit tests share: a gateway's domain (store, registry, runs) on the in-memory store with
a `ManualClock`, a deployed task, runs, and a dispatcher built on them. No sockets, no sleeps: `settle` turns the
event loop until a condition holds (a bounded number of turns, no wall time)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

import flyte
from flyte._clock import ManualClock
from flyte._wire import ActionSubmitRequest, ClusterRecord, DeployRequest, RunCreateRequest, TaskSpec
from gateway._dispatch import Dispatcher
from gateway._leader import Election
from gateway._registry import Registry
from gateway._runs import Runs
from gateway._sessions import AgentSession
from gateway.store import KeyValue, Store, TxnResult, open_store

PROJECT, DOMAIN, TASK = "proj", "dev", "env.work"
TTL = 10.0


@dataclass
class Domain:
    clock: ManualClock
    store: Store
    runs: Runs

    async def close(self) -> None:
        await self.runs.close()
        await self.store.close()


async def domain() -> Domain:
    # Starts at the machine's time: the retry policy (`gateway._runs`) stamps `not_before` with it.
    clock = ManualClock(start=time.time())
    store = await open_store("memory", clock=clock)
    runs = Runs(store, Registry(store))
    spec = TaskSpec(
        name=TASK,
        short_name="work",
        signature="() -> None",
        interface_digest="0" * 16,
        resources=flyte.Resources(cpu=1, memory="1Mi").to_dict(),
    )
    await runs.registry.deploy(
        DeployRequest(project=PROJECT, domain=DOMAIN, env="env", version="v1", bundle_digest="b" * 64, tasks=[spec])
    )
    return Domain(clock, store, runs)


def dispatcher(d: Domain) -> Dispatcher:
    return Dispatcher(d.store, d.runs, clock=d.clock, lease_ttl=TTL)


@contextlib.asynccontextmanager
async def leading(d: Domain, dispatch: Dispatcher, replica: str = "r1") -> AsyncIterator[Election]:
    """`dispatch` elected leader (so it places) through a real election on the domain's store. Its lease is far
    longer than any test advances the clock: only the agents' leases end in these tests."""

    async def lead(_: int) -> None:
        await dispatch.lead(election.fence)

    election = Election(d.store, replica, lead, ttl=1e6)
    campaign = asyncio.create_task(election.run())
    try:
        await settle(lambda: election.leading or campaign.done())
        yield election
    finally:
        campaign.cancel()
        with contextlib.suppress(BaseException):
            await campaign


@contextlib.asynccontextmanager
async def leader_holding_east(d: Domain, cpu: float) -> AsyncIterator[tuple[Dispatcher, AgentSession]]:
    """A started dispatcher holding the agent of `east` (`cpu` of room), elected leader; stopped at the end."""
    leader = dispatcher(d)
    await leader.start()
    session = await leader.open_session(cluster("east", cpu=cpu), socket())
    async with leading(d, leader):
        yield leader, session
    await leader.stop()


async def new_run(runs: Runs, **request: object) -> str:
    run, _ = await runs.create_run(RunCreateRequest(project=PROJECT, domain=DOMAIN, task=TASK, **request))
    return run.name


def counted_reads(d: Domain, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The domain's store reads from here on, by key."""
    reads: Counter[str] = Counter()
    get = d.store.get

    async def counting(key: str) -> KeyValue | None:
        reads[key] += 1
        return await get(key)

    monkeypatch.setattr(d.store, "get", counting)
    return reads


async def child(runs: Runs, run: str, name: str = "a" + "1" * 20) -> str:
    await runs.submit_many(await runs.get_run(run), [ActionSubmitRequest(name=name, parent="a0", task=TASK)])
    return name


def cluster(name: str, cpu: float = 4.0) -> ClusterRecord:
    room = {"cpu": cpu, "memory": float(2**34)}
    return ClusterRecord(name=name, region="r1", cloud="local", capacity=room, free=dict(room))


def socket() -> web.WebSocketResponse:
    """An agent's socket that was never opened: the parts only close it, which it survives."""
    return web.WebSocketResponse()


async def settle(condition: Callable[[], bool], turns: int = 5000) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not hold after the event loop went idle")


async def idle(turns: int = 500) -> None:
    """Let everything that can run without the clock moving run (a bounded number of loop turns)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def record_writes(d: Domain, monkeypatch: pytest.MonkeyPatch, at_sync: Callable[[], str] = lambda: "sync") -> list[str]:
    """Record each transaction the store commits (durable or not) and each sync (as `at_sync` describes it)."""
    writes: list[str] = []
    txn, sync = d.store.txn, d.store.sync

    async def recorded_txn(*args: Any, durable: bool = True, **kwargs: Any) -> TxnResult:
        writes.append("durable" if durable else "not durable")
        return await txn(*args, durable=durable, **kwargs)

    async def recorded_sync() -> None:
        writes.append(at_sync())
        await sync()

    monkeypatch.setattr(d.store, "txn", recorded_txn)
    monkeypatch.setattr(d.store, "sync", recorded_sync)
    return writes
