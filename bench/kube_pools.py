"""Reusable pools on Kubernetes against one pod per attempt, on the kmock rig of the tests.

    python bench/kube_pools.py [--pooled 50] [--pods 10]

Starts kmock (the Kubernetes API stand-in) with its kubelet and Deployment controller stand-ins (which run pods as
local processes, tests/kube_cluster.py), a gateway and an agent with `--backend kubernetes` as processes; then a
parent task calls no-op children one after another, first on a reusable environment (one warm pod of a
Deployment), then on a plain one (a pod per attempt), and prints submit-to-result latencies measured inside the
parent. The first pooled call, which makes the Deployment and waits for its pod, is shown apart. Timing only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "integration")]

from kube_cluster import Deployments, Kubelet, fake_cluster  # noqa: E402
from processes import GatewayProcess  # noqa: E402

PROGRAM = textwrap.dedent("""
    import json
    import time

    import flyte

    small = flyte.Resources(cpu=0.1, memory="128Mi")
    pool = flyte.TaskEnvironment("kb_pool", resources=small, reusable=flyte.ReusePolicy(replicas=1))
    pods = flyte.TaskEnvironment("kb_pods", resources=small)
    env = flyte.TaskEnvironment("kb_parent", depends_on=[pool, pods])


    @pool.task
    async def warm(x: int) -> int:
        return x


    @pods.task
    async def cold(x: int) -> int:
        return x


    @env.task
    async def measure(pooled: int, pods: int) -> str:
        seconds = {}
        for name, task, count in (("pool", warm, pooled), ("pod", cold, pods)):
            seconds[name] = []
            for i in range(count):
                started = time.perf_counter()
                await task(i)
                seconds[name].append(time.perf_counter() - started)
        return json.dumps(seconds)
""")


async def bench(pooled: int, pods: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="kube-pools-") as tmp:
        root = Path(tmp)
        async with fake_cluster(root) as cluster:
            cluster.add_node("node-a", {"cpu": "64", "memory": "256Gi", "pods": "500"})
            gateway = GatewayProcess(f"sqlite:{root / 'state.db'}", root / "gateway").start()
            agent = None
            try:
                async with (
                    aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as http,
                    http.post(f"{gateway.endpoint}/api/v1/tokens", json={"scopes": ["agent:k1"]}) as response,
                ):
                    token = (await response.json())["token"]
                command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", gateway.endpoint]
                command += ["--cluster", "k1", "--backend", "kubernetes", "--kubeconfig", str(cluster.kubeconfig)]
                log = root / "agent.log"
                with log.open("w") as out:
                    agent = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
                        [*command, "--namespace", "flyte"],
                        env={**os.environ, "FLYTE_AGENT_TOKEN": token, "FLYTE_POD_IP": "127.0.0.1"},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                deadline = time.monotonic() + 60
                while "connected to" not in log.read_text():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the agent did not connect:\n" + log.read_text())
                    await asyncio.sleep(0.1)
                program = root / "kube_pools_bench.py"
                program.write_text(PROGRAM)
                run = [sys.executable, "-m", "flyte.cli", "run", str(program), "measure"]
                run += ["--pooled", str(pooled), "--pods", str(pods)]
                env = {**os.environ, "FLYTE_ENDPOINT": gateway.endpoint, "FLYTE_API_KEY": gateway.token}
                async with Kubelet(cluster, root / "pod-home"), Deployments(cluster):
                    result = await asyncio.to_thread(
                        subprocess.run, run, cwd=root, env=env, capture_output=True, text=True, timeout=1800
                    )
                if result.returncode != 0:
                    raise RuntimeError(result.stderr)
                seconds: dict[str, list[float]] = json.loads(json.loads(result.stdout.split("output:")[-1]))
                return seconds
            finally:
                if agent is not None:
                    agent.terminate()
                    await asyncio.to_thread(agent.wait, 60)
                gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pooled", type=int, default=50, help="children on the reusable environment")
    parser.add_argument("--pods", type=int, default=10, help="children on the plain environment")
    args = parser.parse_args()
    seconds = asyncio.run(bench(args.pooled, args.pods))
    first, warm = seconds["pool"][0], seconds["pool"][1:]
    print(f"first pooled child (makes the Deployment, waits for its pod): {first * 1000:.0f} ms")
    for name, values in (("pooled (warm pod)", warm), ("a pod per attempt", seconds["pod"])):
        if len(values) < 2:
            continue
        p99 = statistics.quantiles(values, n=100)[98] if len(values) >= 10 else max(values)
        print(f"{name:>18}: n={len(values)} p50 {statistics.median(values) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


if __name__ == "__main__":
    main()
