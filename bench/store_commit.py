"""CPU per transaction of the SQLite store under group commit, driven the way the gateway drives it.

    python bench/store_commit.py [--txns 6000] [--callers 30] [--idle-watchers 4] [--repeat 3]

`--callers` tasks each compare-and-swap their own action key through `GroupCommit` (a compare and 1-3 puts of 1-2 KB,
every other one not durable, as the gateway's placed and running marks are), so the store commits batches of up to
`--callers` transactions (in a 1,000-way fan-out 9 in 10 of the gateway's batches hold one: `--callers 1` is that
case). One watch consumes every event (the action index); `--idle-watchers` more watch prefixes
nothing is written under (sessions, leader, notifications), as the gateway's do. Prints CPU time (user + system,
`time.process_time`) and wall time per transaction, and transactions per store commit. Timing only; never part of
pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gateway._group_commit import GroupCommit
from gateway.store import Compare, Op, Put, Store, TxnResult, WatchEvent
from gateway.store._sqlite import SqliteStore

ACTIONS = "/actions/"


def _value(i: int, size: int) -> bytes:
    return (f"{i:08d}".encode() * (size // 8 + 1))[:size]


async def _caller(commit: GroupCommit, me: int, txns: int) -> None:
    key = f"{ACTIONS}run/{me:04d}"
    revision = 0
    for i in range(txns):
        ops: list[Op] = [Put(key, _value(i, 1500))]
        ops += [Put(f"{ACTIONS}spans/{me:04d}/{i % 50}/{j}", _value(i, 1000 + 500 * j)) for j in range(i % 3)]
        result = await commit.txn([Compare(key, revision)], ops, durable=i % 2 == 0)
        if not result.succeeded:
            raise RuntimeError(f"caller {me} lost a race on its own key at {i}")
        revision = result.revision


class _Counting(SqliteStore):
    """Counts the store transactions group commit makes."""

    commits = 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *, durable: bool = True
    ) -> TxnResult:
        self.commits += 1
        return await super().txn(compares, success, failure, durable=durable)


class _Follower:
    """A watch that consumes every event under its prefix, as the gateway's action index does."""

    def __init__(self, store: Store, prefix: str, start: int):
        self.last = 0
        self._moved = asyncio.Event()
        self.task = asyncio.create_task(self._follow(store, prefix, start))

    async def _follow(self, store: Store, prefix: str, start: int) -> None:
        batch: list[WatchEvent]
        async for batch in store.watch(prefix, start):
            self.last = batch[-1].mod_revision
            self._moved.set()

    async def reach(self, revision: int) -> None:
        while self.last < revision:
            self._moved.clear()
            await self._moved.wait()


async def run_once(path: Path, txns: int, callers: int, idle_watchers: int) -> tuple[float, float, float, float]:
    """CPU µs per txn (and of it, in the kernel), wall µs per txn and txns per store commit, on a fresh store file."""
    store = _Counting(str(path))
    commit = GroupCommit(store)
    start = await store.revision() + 1
    followers = [_Follower(store, ACTIONS, start)]
    followers += [_Follower(store, f"/idle/{n}/", start) for n in range(idle_watchers)]
    await asyncio.sleep(0)
    cpu, system, wall = time.process_time(), os.times().system, time.perf_counter()
    await asyncio.gather(*(_caller(commit, me, txns // callers) for me in range(callers)))
    await followers[0].reach(await store.revision())
    cpu, system, wall = time.process_time() - cpu, os.times().system - system, time.perf_counter() - wall
    for follower in followers:
        follower.task.cancel()
    await asyncio.gather(*(f.task for f in followers), return_exceptions=True)
    await store.close()
    done = callers * (txns // callers)
    return cpu / done * 1e6, system / done * 1e6, wall / done * 1e6, done / max(store.commits, 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txns", type=int, default=6000)
    parser.add_argument("--callers", type=int, default=30)
    parser.add_argument("--idle-watchers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cpus, systems, walls, sizes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        for n in range(args.repeat):
            path = Path(tmp) / f"store-{n}.db"
            cpu, system, wall, size = await run_once(path, args.txns, args.callers, args.idle_watchers)
            cpus.append(cpu)
            systems.append(system)
            walls.append(wall)
            sizes.append(size)
            print(f"run {n}: {cpu:6.1f} µs CPU/txn ({system:4.1f} sys) {wall:6.1f} µs wall/txn {size:4.1f} txns/commit")
    print(
        f"median: {statistics.median(cpus):.1f} µs CPU/txn ({statistics.median(systems):.1f} system),"
        f" {statistics.median(walls):.1f} µs wall/txn,"
        f" {statistics.median(sizes):.1f} txns/commit"
    )


if __name__ == "__main__":
    asyncio.run(main())
