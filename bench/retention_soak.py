"""Retention soak: many short runs against a gateway with a short retention, and the store's size over time.

    python bench/retention_soak.py [--minutes 4] [--retain 30s] [--rate 5] [--stores sqlite,etcd] [--every 20]

For each store a real gateway process is started (`flyte gateway serve --retain-runs 30s --blob-grace 30s
--history-kept 1000`; etcd started by the script when `etcd` is on PATH). Four loops then make `--rate` runs a
second between them: each uploads a unique input blob, creates a run (with an idempotency key) whose input refers
to it, submits four children, and moves every action through running to succeeded. Every `--every` seconds a line
shows the runs made so far, the runs the gateway still lists, the blobs on disk, and the store's size: the SQLite
file plus its WAL, or etcd's `etcd_mvcc_db_total_size_in_bytes` and `..._in_use_in_bytes` from its /metrics. The
size is the live keys (bounded by retention) plus the history kept (bounded by `--history-kept`, compacted once a
minute): after the first retention period and the first compaction past it, it should stay flat.
Figures of the last run are in `docs/operations.md` ("Retention"). Timing and sizes only; never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from etcd_process import EtcdProcess
from processes import GatewayProcess

LOOPS = 4
CHILDREN = 4


def _value(obj: object) -> dict[str, str]:
    text = json.dumps(obj)
    return {"kind": "json", "digest": hashlib.sha256(text.encode()).hexdigest(), "json_text": text}


class Driver:
    def __init__(self, endpoint: str, http: aiohttp.ClientSession):
        self.endpoint = endpoint
        self.http = http
        self.runs = 0

    async def call(self, method: str, path: str, body: object = None, data: bytes | None = None) -> object:
        async with self.http.request(
            method, self.endpoint + path, json=body if data is None else None, data=data
        ) as response:
            answer = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {answer}")
            return answer

    async def blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        await self.call("PUT", f"/api/v1/blobs/{digest}", data=data)
        return digest

    async def deploy(self) -> str:
        env = "soak"
        bundle = await self.blob(b"soak bundle")
        task = {
            "name": f"{env}.main",
            "short_name": "main",
            "signature": "main(x: int) -> int",
            "interface_digest": "0123456789abcdef",
            "inputs": [{"name": "x", "type": "int"}],
            "output": "int",
        }
        body = {
            "project": "default",
            "domain": "development",
            "env": env,
            "version": "v1",
            "bundle_digest": bundle,
            "tasks": [task],
        }
        await self.call("POST", "/api/v1/deployments", body)
        return f"{env}.main"

    async def finish(self, run: str, action: str) -> None:
        await self.call("POST", f"/api/v1/runs/{run}/actions/{action}/events", {"phase": "running", "attempt": 1})
        done = {"phase": "succeeded", "attempt": 1, "output": _value(1)}
        await self.call("POST", f"/api/v1/runs/{run}/actions/{action}/events", done)

    async def one_run(self, task: str) -> None:
        data = f"input {uuid.uuid4()}".encode() * 32
        digest = await self.blob(data)
        body = {
            "project": "default",
            "domain": "development",
            "task": task,
            "inputs": {"x": {"kind": "json", "digest": digest, "ref": f"blob:{digest}"}},
            "idempotency_key": str(uuid.uuid4()),
        }
        run = await self.call("POST", "/api/v1/runs", body)
        assert isinstance(run, dict)
        name = run["name"]
        children = ["a" + uuid.uuid4().hex[:20] for _ in range(CHILDREN)]
        for child in children:
            request = {"name": child, "parent": "a0", "task": task, "inputs": {"x": _value(len(child))}}
            await self.call("POST", f"/api/v1/runs/{name}/actions", request)
        await asyncio.gather(*(self.finish(name, child) for child in children))
        await self.finish(name, "a0")
        self.runs += 1

    async def loop(self, task: str, until: float, period: float) -> None:
        """Runs back to back, one every `period` seconds at most (a steady load, not a stress test)."""
        next_start = time.monotonic()
        while next_start < until:
            await asyncio.sleep(max(0.0, next_start - time.monotonic()))
            await self.one_run(task)
            next_start += period


def _etcd_sizes(etcd: EtcdProcess) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://{etcd.host}:{etcd.port}/metrics", timeout=5) as response:
        text = response.read().decode()

    def metric(name: str) -> int:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        return int(float(match.group(1))) if match else -1

    return metric("etcd_mvcc_db_total_size_in_bytes"), metric("etcd_mvcc_db_total_size_in_use_in_bytes")


def _sqlite_sizes(db: Path) -> tuple[int, int]:
    wal = Path(f"{db}-wal")
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0


async def soak(
    gateway: GatewayProcess,
    minutes: float,
    every: float,
    rate: float,
    sizes: Callable[[], tuple[int, int]],
    labels: tuple[str, str],
) -> None:
    blobs = gateway.home / "flyte" / "gateway" / "blobs"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as http:
        driver = Driver(gateway.endpoint, http)
        task = await driver.deploy()
        start = time.monotonic()
        until = start + minutes * 60
        loops = [asyncio.create_task(driver.loop(task, until, LOOPS / rate)) for _ in range(LOOPS)]
        print(f"{'t s':>6}{'runs made':>11}{'runs kept':>11}{'blobs':>8}{labels[0]:>14}{labels[1]:>14}", flush=True)
        while not all(loop.done() for loop in loops):
            await asyncio.wait(loops, timeout=every)
            listed = await driver.call("GET", "/api/v1/runs?limit=1000")
            assert isinstance(listed, list)
            blob_count = sum(1 for _ in blobs.glob("*/*"))
            first, second = sizes()
            print(
                f"{time.monotonic() - start:>6.0f}{driver.runs:>11}{len(listed):>11}{blob_count:>8}"
                f"{first / 1e6:>12.2f}MB{second / 1e6:>12.2f}MB",
                flush=True,
            )
        for loop in loops:
            loop.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--retain", default="30s")
    parser.add_argument("--every", type=float, default=20.0)
    parser.add_argument("--stores", default="sqlite,etcd")
    parser.add_argument("--history", type=int, default=1000, help="--history-kept: store revisions of history kept.")
    parser.add_argument("--rate", type=float, default=5.0, help="Runs per second offered (each with 5 actions).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flyte-bench-retention-"))
    options = ["--retain-runs", args.retain, "--blob-grace", args.retain, "--history-kept", str(args.history)]
    try:
        for store in args.stores.split(","):
            etcd = None
            print(f"\n== {store}: --retain-runs {args.retain}, {args.minutes} minutes", flush=True)
            if store == "etcd":
                if shutil.which("etcd") is None:
                    print("(no etcd on PATH)")
                    continue
                etcd = EtcdProcess(root / "etcd").start()
                url = etcd.url
                sizes = functools.partial(_etcd_sizes, etcd)
                labels = ("db size", "db in use")
            else:
                db = root / "state.db"
                url = f"sqlite:{db}"
                sizes = functools.partial(_sqlite_sizes, db)
                labels = ("file", "wal")
            os.environ.pop("FLYTE_ENDPOINT", None)
            gateway = GatewayProcess(url, root / f"home-{store}", extra_args=options).start()
            try:
                asyncio.run(soak(gateway, args.minutes, args.every, args.rate, sizes, labels))
            finally:
                gateway.stop()
                if etcd is not None:
                    etcd.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
