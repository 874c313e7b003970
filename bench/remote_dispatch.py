"""Remote dispatch: no-op child actions through the gateway and an agent, on a warm pool and as cold processes.

    python bench/remote_dispatch.py [--fanout 1000 --fanout 10000] [--chain 200] [--cold 10]
                                    [--tracing on|off|both] [--rounds 3]

Starts its own rig (a gateway and one agent as separate processes, in a temporary FLYTE_HOME), then measures from
inside a parent task: submit-to-result latency of sequential children on a warm pool (p50/p99), throughput of
fan-outs on the pool, and the latency of cold process-backend children. Timing only; never pass/fail.
Targets on a 2-core machine: p50 <= 3 ms, >= 2,000 actions/s, cold <= 300 ms.

`--tracing both` (the default) measures with OpenTelemetry tracing off (FLYTE_TRACING=0 for the rig) and on, a
fresh rig each, alternating for `--rounds` rounds so drifting machine load falls on both alike; it prints each
mode's medians over the rounds and what tracing costs. Target: tracing costs <= 10% of throughput.
"""

from __future__ import annotations

import argparse
import json
import math
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


Figures = dict[str, tuple[float, float, float, float]]
"""workload -> (p50 ms, p99 ms, actions/s, CPU ms per action of the rig's processes); NaN where it does not apply."""
NA = float("nan")
SETTLE_SECONDS = 3.0
"""After a fan-out, how long its spans may take to be exported and kept: their CPU counts too."""


def rig_cpu_seconds(root: Path) -> float:
    """CPU time used so far by the rig's processes: the gateway, the agent and every worker (each in the session
    of the process that started it). Wall-clock rates swing with the machine's load; CPU per action much less."""
    state = json.loads((root / "home" / "rig" / "rig.json").read_text())
    sessions = set(state["pids"].values())
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[3]) in sessions:  # session id; utime and stime follow at 11 and 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(root: Path, env: dict[str, str], args: argparse.Namespace) -> Figures:
    """One rig, the workloads through it, the rig stopped."""
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
        import bench_program  # type: ignore[import-not-found]

        import flyte

        flyte.init_from_config()
        flyte.run(bench_program.chain, n=5).wait()  # warm up: deploy, start the pool, load the bundle
        figures: Figures = {}
        latencies = flyte.run(bench_program.chain, n=args.chain).outputs()[0]
        ms = [1000 * x for x in latencies]
        figures["warm pool, sequential"] = (
            percentile(ms, 0.5),
            percentile(ms, 0.99),
            len(ms) / (sum(latencies) or 1),
            NA,
        )
        for n in args.fanout or [1000]:
            cpu = rig_cpu_seconds(root)
            seconds = flyte.run(bench_program.fan_out, n=n).outputs()[0]
            time.sleep(SETTLE_SECONDS)
            cpu_ms = 1000 * (rig_cpu_seconds(root) - cpu) / n
            figures[f"warm pool, fan-out {n:,}"] = (NA, NA, n / seconds, cpu_ms)
        cold = flyte.run(bench_program.cold_chain, n=args.cold).outputs()[0]
        ms = [1000 * x for x in cold]
        figures["cold process, sequential"] = (statistics.median(ms), max(ms), len(ms) / sum(cold), NA)
        return figures
    finally:
        subprocess.run([sys.executable, "-m", "flyte.cli", "rig", "down"], cwd=root, env=env, capture_output=True)


def print_table(title: str, figures: Figures) -> None:
    print(f"\n{title}")
    print(f"{'workload':<34}{'p50 ms':>10}{'p99 ms':>10}{'actions/s':>12}{'CPU ms/action':>15}")
    for workload, (p50, p99, rate, cpu) in figures.items():
        cells = "".join(f"{'' if math.isnan(v) else format(v, '.2f'):>10}" for v in (p50, p99))
        print(f"{workload:<34}{cells}{rate:>12,.1f}{'' if math.isnan(cpu) else format(cpu, '.3f'):>15}")


def medians(rounds: list[Figures]) -> Figures:
    return {
        workload: tuple(statistics.median(r[workload][i] for r in rounds) for i in range(4))  # type: ignore[misc]
        for workload in rounds[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, action="append", help="fan-out widths (default 1000)")
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--tracing", choices=["on", "off", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=1, help="with --tracing both: off/on rounds, alternating")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flyte-bench-remote-"))
    env = {**os.environ, "FLYTE_HOME": str(root / "home"), "HOME": str(root)}
    os.environ.update({"FLYTE_HOME": env["FLYTE_HOME"], "HOME": env["HOME"]})
    (root / "bench_program.py").write_text(PROGRAM)
    os.chdir(root)
    sys.path.insert(0, str(root))
    modes = ["off", "on"] if args.tracing == "both" else [args.tracing]
    results: dict[str, list[Figures]] = {mode: [] for mode in modes}
    for _ in range(args.rounds if args.tracing == "both" else 1):
        for mode in modes:
            results[mode].append(measure(root, {**env, "FLYTE_TRACING": "1" if mode == "on" else "0"}, args))
    summary = {mode: medians(rounds) for mode, rounds in results.items()}
    for mode, figures in summary.items():
        print_table(f"tracing {mode} (median of {len(results[mode])})", figures)
    if len(modes) == 2:
        # Throughput lost: wall-clock (noisy on a shared machine) and as CPU per action, which is what bounds
        # throughput when the rig is CPU-bound (1 - cpu_off / cpu_on).
        print("\nwhat tracing costs (on vs off)")
        print(f"{'workload':<34}{'p50':>10}{'actions/s':>12}{'by CPU':>15}")
        for workload, (p50_off, _, rate_off, cpu_off) in summary["off"].items():
            p50_on, _, rate_on, cpu_on = summary["on"][workload]
            p50 = "" if math.isnan(p50_off) else f"{100 * (p50_on / p50_off - 1):+.1f}%"
            by_cpu = "" if math.isnan(cpu_off) else f"{100 * (1 - cpu_off / cpu_on):.1f}%"
            print(f"{workload:<34}{p50:>10}{100 * (1 - rate_on / rate_off):>11.1f}%{by_cpu:>15}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - start:.0f}s)")
