"""Remote dispatch: no-op child actions through the gateway and an agent, on a warm pool and as cold processes.

    python bench/remote_dispatch.py [--fanout 1000 --fanout 10000] [--chain 200] [--cold 10]

Starts its own rig (a gateway and one agent as separate processes, in a temporary FLYTE_HOME), then measures from
inside a parent task: submit-to-result latency of sequential children on a warm pool (p50/p99), throughput of
fan-outs on the pool, and the latency of cold process-backend children. Timing only; never pass/fail.
Targets on a 2-core machine: p50 <= 3 ms, >= 2,000 actions/s, cold <= 300 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import asyncio
    import time

    import flyte

    pool = flyte.TaskEnvironment("bench_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=256))
    cold = flyte.TaskEnvironment("bench_cold")
    pool.add_dependency(cold)


    @pool.task
    async def noop(i: int) -> int:
        return i


    @cold.task
    async def cold_noop(i: int) -> int:
        return i


    @pool.task
    async def chain(n: int) -> list[float]:
        latencies = []
        for i in range(n):
            start = time.perf_counter()
            await noop(i)
            latencies.append(time.perf_counter() - start)
        return latencies


    @pool.task
    async def fan_out(n: int) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(noop(i) for i in range(n)))
        return time.perf_counter() - start


    @pool.task
    async def cold_chain(n: int) -> list[float]:
        latencies = []
        for i in range(n):
            start = time.perf_counter()
            await cold_noop(i)
            latencies.append(time.perf_counter() - start)
        return latencies
""")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, action="append", help="fan-out widths (default 1000)")
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--cold", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flyte-bench-remote-"))
    env = {**os.environ, "FLYTE_HOME": str(root / "home"), "HOME": str(root)}
    os.environ.update({"FLYTE_HOME": env["FLYTE_HOME"], "HOME": env["HOME"]})
    (root / "bench_program.py").write_text(PROGRAM)
    up = subprocess.run(
        [sys.executable, "-m", "flyte.cli", "rig", "up", "--clusters", "bench", "--cpu", "64"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if up.returncode != 0:
        sys.exit(up.stderr)
    try:
        os.chdir(root)
        sys.path.insert(0, str(root))
        import bench_program  # type: ignore[import-not-found]

        import flyte

        flyte.init_from_config()
        flyte.run(bench_program.chain, n=5).wait()  # warm up: deploy, start the pool, load the bundle

        print(f"{'workload':<34}{'p50 ms':>10}{'p99 ms':>10}{'actions/s':>12}")
        latencies = flyte.run(bench_program.chain, n=args.chain).outputs()[0]
        ms = [1000 * x for x in latencies]
        print(
            f"{'warm pool, sequential':<34}{percentile(ms, 0.5):>10.2f}{percentile(ms, 0.99):>10.2f}"
            f"{len(ms) / (sum(latencies) or 1):>12,.0f}"
        )
        for n in args.fanout or [1000]:
            seconds = flyte.run(bench_program.fan_out, n=n).outputs()[0]
            print(f"{'warm pool, fan-out ' + format(n, ','):<34}{'':>10}{'':>10}{n / seconds:>12,.0f}")
        cold = flyte.run(bench_program.cold_chain, n=args.cold).outputs()[0]
        ms = [1000 * x for x in cold]
        print(
            f"{'cold process, sequential':<34}{statistics.median(ms):>10.1f}{max(ms):>10.1f}"
            f"{len(ms) / sum(cold):>12,.1f}"
        )
    finally:
        subprocess.run([sys.executable, "-m", "flyte.cli", "rig", "down"], cwd=root, env=env, capture_output=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - start:.0f}s)")
