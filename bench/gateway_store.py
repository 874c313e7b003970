"""The gateway's state stores: write throughput and watch latency for in-memory SQLite, a SQLite file and etcd.

    python bench/gateway_store.py [--seconds 2] [--stores memory,sqlite,etcd]

Per store: single puts/s (one at a time, and 16 in flight), transactions of 64 puts/s (the gateway's group commit),
and submit-to-visible latency p50/p99 (put a key, time until a watch on its prefix yields it). The etcd row starts
its own etcd (fsync on, temporary data directory) when `etcd` is on PATH. Timing only; never part of pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' etcd helper

from etcd_process import EtcdProcess

from gateway.store import Put, Store, WatchEvent
from gateway.store._sqlite import SqliteStore

VALUE = b"x" * 512
"""About the size of an action record."""


async def rate(seconds: float, step: Callable[[int], Awaitable[object]]) -> float:
    """Calls of `step` per second, run back to back for `seconds`."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await step(n)
        n += 1
    return n / elapsed


async def single_puts(store: Store, seconds: float) -> float:
    return await rate(seconds, lambda i: store.put(f"/bench/put/{i % 10_000:05d}", VALUE))


async def concurrent_puts(store: Store, seconds: float, width: int = 16) -> float:
    async def batch(i: int) -> None:
        await asyncio.gather(*(store.put(f"/bench/cput/{(i * width + j) % 10_000:05d}", VALUE) for j in range(width)))

    return await rate(seconds, batch) * width


async def txn_puts(store: Store, seconds: float, size: int = 64) -> float:
    return await rate(
        seconds, lambda i: store.txn([], [Put(f"/bench/txn/{(i * size + j) % 10_000:05d}", VALUE) for j in range(size)])
    )


async def watch_latency(store: Store, samples: int) -> tuple[float, float]:
    """p50 and p99 in ms from calling put to the watcher holding the event."""
    seen: dict[str, float] = {}
    arrived = asyncio.Event()
    start_revision = await store.revision() + 1

    async def consume() -> None:
        batch: list[WatchEvent]
        async for batch in store.watch("/bench/watch/", start_revision):
            now = time.perf_counter()
            for e in batch:
                seen[e.key] = now
            arrived.set()

    watcher = asyncio.create_task(consume())
    latencies: list[float] = []
    try:
        for i in range(samples + 10):
            key = f"/bench/watch/{i:05d}"
            start = time.perf_counter()
            await store.put(key, VALUE)
            async with asyncio.timeout(10):
                while key not in seen:
                    arrived.clear()
                    await arrived.wait()
            if i >= 10:  # the first few include the watch being set up
                latencies.append((seen[key] - start) * 1000)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98]


async def measure(name: str, store: Store, seconds: float) -> list[str]:
    try:
        singles = await single_puts(store, seconds)
        concurrent = await concurrent_puts(store, seconds)
        txns = await txn_puts(store, seconds)
        p50, p99 = await watch_latency(store, samples=300)
    finally:
        await store.close()
    figures = [f"{singles:,.0f}", f"{concurrent:,.0f}", f"{txns:,.0f}", f"{txns * 64:,.0f}", f"{p50:.2f}", f"{p99:.2f}"]
    return [name, *figures]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    parser.add_argument("--stores", default="memory,sqlite,etcd")
    args = parser.parse_args()
    wanted = args.stores.split(",")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        if "memory" in wanted:
            rows.append(await measure("memory", SqliteStore(":memory:"), args.seconds))
        if "sqlite" in wanted:
            rows.append(await measure("sqlite file", SqliteStore(str(Path(tmp) / "store.db")), args.seconds))
        if "etcd" in wanted:
            if shutil.which("etcd") is None:
                print("etcd: not on PATH, skipped")
            else:
                from gateway.store._etcd import EtcdStore

                server = EtcdProcess(Path(tmp) / "etcd").start()
                try:
                    rows.append(await measure("etcd", EtcdStore(server.host, server.port), args.seconds))
                finally:
                    server.stop()
    header = ["store", "puts/s", "puts/s x16", "txn64/s", "keys/s in txn64", "watch p50 ms", "watch p99 ms"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


if __name__ == "__main__":
    asyncio.run(main())
