"""Action submissions through the gateway, per store: submissions per second and submit-to-visible-in-watch latency.

    python bench/gateway_submit.py [--actions 2000] [--stores memory,sqlite,etcd]

For each store a real gateway process is started (`flyte gateway serve`, etcd started by the script when `etcd` is
on PATH). A task is deployed and a run created; then child actions are submitted over HTTP with 32 in flight
(actions/s), and one at a time with a watch stream open on the run (time from sending the submission to seeing the
action in the stream: p50/p99). Timing only; never part of pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from etcd_process import EtcdProcess
from processes import GatewayProcess


def _value(obj: object) -> dict[str, str]:
    text = json.dumps(obj)
    return {"kind": "json", "digest": hashlib.sha256(text.encode()).hexdigest(), "json_text": text}


def _child(i: int) -> dict[str, object]:
    return {
        "name": "a" + hashlib.sha256(str(i).encode()).hexdigest()[:20],
        "parent": "a0",
        "task": "bench.main",
        "inputs": {"x": _value(i)},
    }


async def measure(endpoint: str, token: str, actions: int) -> tuple[float, float, float]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        bundle = b"bench bundle"
        digest = hashlib.sha256(bundle).hexdigest()
        await (await http.put(f"{endpoint}/api/v1/blobs/{digest}", data=bundle)).read()
        spec = {
            "name": "bench.main",
            "short_name": "main",
            "signature": "main(x: int) -> int",
            "interface_digest": "0123456789abcdef",
            "inputs": [{"name": "x", "type": "int"}],
        }
        deploy = {
            "project": "default",
            "domain": "development",
            "env": "bench",
            "version": "v1",
            "bundle_digest": digest,
            "tasks": [spec],
        }
        await (await http.post(f"{endpoint}/api/v1/deployments", json=deploy)).read()
        body = {"project": "default", "domain": "development", "task": "bench.main", "inputs": {"x": _value(0)}}
        run = await (await http.post(f"{endpoint}/api/v1/runs", json=body)).json()
        url = f"{endpoint}/api/v1/runs/{run['name']}/actions"
        gate = asyncio.Semaphore(32)

        async def submit(i: int) -> None:
            async with gate, http.post(url, json=_child(i)) as response:
                assert response.status in (200, 201), await response.text()

        start = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(actions)))
        per_second = actions / (time.perf_counter() - start)

        latencies = []
        async with http.ws_connect(f"{endpoint}/api/v1/runs/{run['name']}/watch?parent=a0") as ws:
            while json.loads((await ws.receive()).data)["type"] != "marker":
                pass
            for i in range(actions, actions + 200):
                sent = time.perf_counter()
                await submit(i)
                while True:
                    message = json.loads((await ws.receive()).data)
                    if any(a["name"] == _child(i)["name"] for a in message["actions"]):
                        break
                latencies.append(time.perf_counter() - sent)
        latencies.sort()
        return per_second, 1000 * latencies[len(latencies) // 2], 1000 * latencies[int(len(latencies) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--stores", default="memory,sqlite,etcd")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flyte-bench-gateway-"))
    print(f"{'store':<10}{'submissions/s':>16}{'visible p50 ms':>16}{'visible p99 ms':>16}")
    for store in args.stores.split(","):
        etcd = None
        if store == "etcd":
            if shutil.which("etcd") is None:
                print(f"{'etcd':<10}{'(no etcd on PATH)':>16}")
                continue
            etcd = EtcdProcess(root / "etcd").start()
            url = etcd.url
        else:
            url = "memory" if store == "memory" else f"sqlite:{root / 'state.db'}"
        os.environ.pop("FLYTE_ENDPOINT", None)
        gateway = GatewayProcess(url, root / f"home-{store}").start()
        try:
            rate, p50, p99 = asyncio.run(measure(gateway.endpoint, gateway.token, args.actions))
            print(f"{store:<10}{rate:>16,.0f}{p50:>16.2f}{p99:>16.2f}")
        finally:
            gateway.stop()
            if etcd is not None:
                etcd.stop()


if __name__ == "__main__":
    main()
