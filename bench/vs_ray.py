"""Flyte Federation against Ray on this machine, one run: fan-outs of no-op children and a sequential chain.

    python bench/vs_ray.py [--fanout 1000 --fanout 10000] [--chain 200] [--ray-version 2.60.0] [--skip-ray]
                           [--root DIR] [--gc] [--pool-queue-depth N]

Ours: a rig (`flyte rig up`: a gateway and one agent as separate processes) with a reusable environment; a parent
task fans out N no-op children on the warm pool, and calls C children one after another. The rig's CPU is read from
/proc around each fan-out and split by process: the gateway, the agent itself, and its workers.

Ray: the same two workloads as nested tasks (a remote parent that submits N remote no-op children and gets them),
on `ray.init(num_cpus=<cores>)` on this machine. Ray is installed on first use into a virtualenv of its own
(`~/.cache/flyte-bench/ray-<version>`), never into the project's environment: it is no dependency of ours.

`--pool-queue-depth N`: the rig's placement policy lets a full pool take N actions per slot to wait on its agent
(`Policy.pool_queue_depth`; the default, 1, queues them in the gateway).

Also the gateway's resident memory before each fan-out, its peak during it, and the growth per action; with `--gc`,
the time each process's cycle collector took per action (`bench/gc_probe`). Prints
both figures and their ratio. Timing only; never pass/fail. Targets (the hot-path issue): fan-outs >= 2x Ray's
nested tasks, chain p50 <= 2 ms and below Ray's, gateway CPU <= 0.5 ms and agent CPU <= 0.3 ms per action.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from remote_dispatch import percentile  # a sibling script: bench/ is on sys.path when a bench runs

OURS = textwrap.dedent("""
    import asyncio
    import time

    import flyte

    pool = flyte.TaskEnvironment(
        "vs_ray", resources=flyte.Resources(cpu=1), reusable=flyte.ReusePolicy(replicas=1, concurrency=512)
    )


    @pool.task
    async def noop(i: int) -> int:
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
""")

RAY = textwrap.dedent("""
    import json
    import os
    import sys
    import time

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


    @ray.remote
    def noop(i):
        return i


    @ray.remote
    def fan_out(n):
        start = time.perf_counter()
        ray.get([noop.remote(i) for i in range(n)])
        return time.perf_counter() - start


    @ray.remote
    def chain(n):
        latencies = []
        for i in range(n):
            start = time.perf_counter()
            ray.get(noop.remote(i))
            latencies.append(time.perf_counter() - start)
        return latencies


    fanouts = [int(x) for x in sys.argv[1].split(",")]
    ray.get(chain.remote(20))  # warm up: workers started, functions exported
    figures = {"chain": ray.get(chain.remote(int(sys.argv[2])))}
    for n in fanouts:
        figures[f"fanout {n}"] = ray.get(fan_out.remote(n))
    print("FIGURES " + json.dumps(figures))
""")


def chain_figures(latencies: list[float]) -> dict[str, float]:
    return {"chain p50 ms": 1000 * statistics.median(latencies), "chain p99 ms": 1000 * percentile(latencies, 0.99)}


def rig_processes(rig_state: Path) -> dict[int, tuple[str, int]]:
    """The rig's live processes, each with its part (the gateway, the agent process itself, or the agent's workers)
    and the CPU it has used so far, in clock ticks."""
    pids: dict[str, int] = json.loads(rig_state.read_text())["pids"]
    agent = next(pid for name, pid in pids.items() if name.startswith("agent-"))
    found: dict[int, tuple[str, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        used = int(fields[11]) + int(fields[12])  # utime, stime; fields[1] is the parent, fields[3] the session
        pid, parent, session = int(stat.parent.name), int(fields[1]), int(fields[3])
        if session == pids["gateway"]:
            found[pid] = ("gateway", used)
        elif pid == agent:
            found[pid] = ("agent", used)
        elif agent in (parent, session):  # workers run in sessions of their own, started by the agent
            found[pid] = ("workers", used)
    return found


def cpu_by_part(rig_state: Path) -> dict[str, float]:
    """CPU seconds used so far by the gateway, the agent process and the agent's workers (live ones only)."""
    ticks = {"gateway": 0, "agent": 0, "workers": 0}
    for part, used in rig_processes(rig_state).values():
        ticks[part] += used
    return {part: t / os.sysconf("SC_CLK_TCK") for part, t in ticks.items()}


def gc_by_part(rig_state: Path, gc_dir: Path) -> dict[str, float]:
    """Seconds the cycle collector took so far in the gateway, the agent and its workers (`--gc`; live ones only),
    as `bench/gc_probe` last wrote them (every half second)."""
    seconds = {"gateway": 0.0, "agent": 0.0, "workers": 0.0}
    for pid, (part, _) in rig_processes(rig_state).items():
        with contextlib.suppress(OSError, ValueError):
            seconds[part] += sum(json.loads((gc_dir / f"{pid}.json").read_text())["seconds"])
    return seconds


def placements(rig_state: Path) -> dict[str, int]:
    """The gateway's placements so far, at submission (in the child's own commit) and by placement passes, and its
    waiting reasons written, likewise."""
    endpoint = json.loads(rig_state.read_text())["endpoint"]
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    counted = r'^flyte_gateway_events_total\{event="((?:placed|waiting_noted)_\w+)"\} (\d+)$'
    found = dict(re.findall(counted, text, re.MULTILINE))
    events = ("placed_at_submit", "placed_by_pass", "waiting_noted_at_submit", "waiting_noted_by_pass")
    return {event: int(found.get(event, 0)) for event in events}


def gateway_memory(rig_state: Path, reset_peak: bool = False) -> tuple[float, float]:
    """The gateway's resident and peak resident memory, MB; `reset_peak` first makes the peak the current size
    (`/proc/PID/clear_refs`, 5), so the peak after a fan-out is that fan-out's own."""
    pid = json.loads(rig_state.read_text())["pids"]["gateway"]
    if reset_peak:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


GC_PROBE = Path(__file__).resolve().parent / "gc_probe"


def rig_up(root: Path, program: str, gc_dir: Path | None = None, pool_queue_depth: int = 1) -> dict[str, str]:
    """A rig in `root` (its FLYTE_HOME, and this process's, under it), with `program` importable as
    `vs_ray_program`; the environment to bring it down with. `gc_dir`: every process of the rig writes the time its
    cycle collector takes there (`bench/gc_probe`)."""
    env = {**os.environ, "FLYTE_HOME": str(root / "home"), "HOME": str(root)}
    if gc_dir is not None:
        gc_dir.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(p for p in (str(GC_PROBE), env.get("PYTHONPATH")) if p)
        env.update({"PYTHONPATH": path, "FLYTE_BENCH_GC_DIR": str(gc_dir)})
    os.environ.update({"FLYTE_HOME": env["FLYTE_HOME"], "HOME": env["HOME"]})
    (root / "vs_ray_program.py").write_text(program)
    os.chdir(root)
    sys.path.insert(0, str(root))
    policy = root / "policy.yaml"
    policy.write_text(f"version: bench\npool_queue_depth: {pool_queue_depth}\n")
    up = subprocess.run(
        [sys.executable, "-m", "flyte.cli", "rig", "up", "--clusters", "bench", "--cpu", "64", "--policy", str(policy)],
        env=env,
        capture_output=True,
        text=True,
    )
    if up.returncode != 0:
        sys.exit(up.stderr)
    return env


def rig_down(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "flyte.cli", "rig", "down"], env=env, capture_output=True)


def measure_ours(
    root: Path, fanouts: list[int], chain: int, with_gc: bool = False, pool_queue_depth: int = 1
) -> dict[str, float]:
    # Outside `root`: the bundle is made of `root`, and files changing there would make every run a new version.
    gc_dir = Path(tempfile.mkdtemp(prefix="flyte-vs-ray-gc-")) if with_gc else None
    env = rig_up(root, OURS, gc_dir, pool_queue_depth)
    try:
        import vs_ray_program  # type: ignore[import-not-found]

        import flyte

        flyte.init_from_config()
        flyte.run(vs_ray_program.chain, n=20).wait()  # warm up: deploy, start the pool, load the bundle
        state = root / "home" / "rig" / "rig.json"
        before, gc_before = cpu_by_part(state), collected(state, gc_dir)
        latencies = flyte.run(vs_ray_program.chain, n=chain).outputs()[0]
        time.sleep(2.0)  # as below: the chain's last spans and reports are still being written
        after, gc_after = cpu_by_part(state), collected(state, gc_dir)
        figures = chain_figures(latencies)
        # CPU per call is steadier than latency on a shared machine: it says what a change costs, not how it waited.
        for part in after:
            figures[f"chain {part} CPU ms/call"] = 1000 * (after[part] - before[part]) / chain
        for part in gc_after:
            figures[f"chain {part} GC ms/call"] = 1000 * (gc_after[part] - gc_before[part]) / chain
        for n in fanouts:
            resident, _ = gateway_memory(state, reset_peak=True)
            before, gc_before = cpu_by_part(state), collected(state, gc_dir)
            placed_before = placements(state)
            seconds = flyte.run(vs_ray_program.fan_out, n=n).outputs()[0]
            time.sleep(2.0)  # spans and final reports of the fan-out are still being written: their CPU counts too
            after, gc_after = cpu_by_part(state), collected(state, gc_dir)
            _, peak = gateway_memory(state)
            figures[f"fan-out {n:,} actions/s"] = n / seconds
            placed = {event: count - placed_before[event] for event, count in placements(state).items()}
            share = placed["placed_at_submit"] / max(1, placed["placed_at_submit"] + placed["placed_by_pass"])
            figures[f"fan-out {n:,} placed at submission %"] = 100 * share
            figures[f"fan-out {n:,} waiting noted at submission"] = placed["waiting_noted_at_submit"]
            figures[f"fan-out {n:,} waiting noted by passes"] = placed["waiting_noted_by_pass"]
            for part in after:
                figures[f"fan-out {n:,} {part} CPU ms/action"] = 1000 * (after[part] - before[part]) / n
            for part in gc_after:
                figures[f"fan-out {n:,} {part} GC ms/action"] = 1000 * (gc_after[part] - gc_before[part]) / n
            figures[f"fan-out {n:,} gateway RSS MB before"] = resident
            figures[f"fan-out {n:,} gateway peak RSS MB"] = peak
            figures[f"fan-out {n:,} gateway peak KB/action"] = 1024 * (peak - resident) / n
        return figures
    finally:
        rig_down(env)


def collected(rig_state: Path, gc_dir: Path | None) -> dict[str, float]:
    """`gc_by_part` with `--gc`, once the probes have written their totals; nothing without it."""
    if gc_dir is None:
        return {}
    time.sleep(0.6)  # each probe writes every half second
    return gc_by_part(rig_state, gc_dir)


def ray_python(version: str) -> Path:
    venv = Path.home() / ".cache" / "flyte-bench" / f"ray-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing ray {version} into {venv} (first use only) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"ray=={version}"], env=ray_env(), check=True)
    return python


def ray_env() -> dict[str, str]:
    """This environment for Ray's own virtualenv, less a `PYTHONPATH` pointing at a checkout of ours: pip there would
    find our package on it and warn that its dependencies are missing."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0"}


def measure_ray(python: Path, fanouts: list[int], chain: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vs-ray-") as work:
        script = Path(work) / "ray_bench.py"
        script.write_text(RAY)
        done = subprocess.run(
            [str(python), str(script), ",".join(map(str, fanouts)), str(chain)],
            capture_output=True,
            text=True,
            env=ray_env(),
            timeout=1800,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("FIGURES ")), None)
    if line is None:
        sys.exit(f"ray bench failed:\n{done.stderr[-3000:]}")
    raw = json.loads(line.removeprefix("FIGURES "))
    figures = {
        "chain p50 ms": 1000 * statistics.median(raw["chain"]),
        "chain p99 ms": 1000 * percentile(raw["chain"], 0.99),
    }
    for n in fanouts:
        figures[f"fan-out {n:,} actions/s"] = n / raw[f"fanout {n}"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, action="append", help="fan-out widths (default 1000 and 10000)")
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--ray-version", default="2.60.0")
    parser.add_argument("--skip-ray", action="store_true", help="only our figures")
    parser.add_argument("--root", type=Path, help="folder for the rig (default: a new temporary one)")
    parser.add_argument(
        "--gc", action="store_true", help="also the time each process's cycle collector takes (bench/gc_probe)"
    )
    parser.add_argument(
        "--pool-queue-depth", type=int, default=1, help="actions per slot a full pool takes to wait on its agent"
    )
    args = parser.parse_args()
    fanouts = args.fanout or [1000, 10000]
    ray = {} if args.skip_ray else measure_ray(ray_python(args.ray_version), fanouts, args.chain)
    root = args.root or Path(tempfile.mkdtemp(prefix="flyte-vs-ray-"))
    ours = measure_ours(root, fanouts, args.chain, args.gc, args.pool_queue_depth)
    print(f"\n{'figure':<44}{'flyte':>12}{'ray':>12}{'ratio':>10}  target")
    for name, value in ours.items():
        theirs = ray.get(name)
        # A ratio above 1 is ours better: more actions per second, or fewer milliseconds per call.
        ratio = "" if theirs is None else f"{value / theirs if 'actions/s' in name else theirs / value:>9.2f}x"
        shown = "" if theirs is None else f"{theirs:.3f}"
        print(f"{name:<44}{value:>12.3f}{shown:>12}{ratio:>10}  {target(name, value, theirs)}".rstrip())


def target(name: str, value: float, theirs: float | None) -> str:
    """The hot-path issue's target for a figure and whether this run met it ('' for a figure without one)."""
    if name == "chain p50 ms":
        met = value <= 2.0 and (theirs is None or value < theirs)
        goal = "<= 2 ms and below Ray"
    elif name.endswith("actions/s") and name.startswith("fan-out"):
        if theirs is None:
            return ">= 2x Ray"
        met, goal = value >= 2 * theirs, ">= 2x Ray"
    elif name.endswith("gateway CPU ms/action"):
        met, goal = value <= 0.5, "<= 0.5"
    elif name.endswith("agent CPU ms/action"):
        met, goal = value <= 0.3, "<= 0.3"
    else:
        return ""
    return f"{goal}: {'met' if met else 'not met'}"


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - start:.0f}s)")
