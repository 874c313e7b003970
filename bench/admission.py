"""Admission on the agent: a wide fan-out of one-off tasks that declare no resources, on one small agent.

    python bench/admission.py [--fanout 500] [--cpu 2]

Starts its own rig (a gateway and one agent as separate processes, in a temporary FLYTE_HOME), runs a parent that
fans out to `--fanout` plain (not reusable) no-op children, and prints the largest 1-minute load average and the
most live worker processes (the agent's children running `flyte._runtime`, warm pools aside) seen while it ran,
with its duration. Before admission, a 500-way fan-out started hundreds of interpreters at once on a 2-core agent
and the load average went past 100. Timing only; never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import asyncio

    import flyte

    env = flyte.TaskEnvironment("bench_admission")


    @env.task
    async def noop(i: int) -> int:
        return i


    @env.task
    async def fan_out(n: int) -> int:
        return sum(await asyncio.gather(*(noop(i) for i in range(n))))
""")


class Sampler(threading.Thread):
    """The largest load average and live worker count, sampled every 50 ms."""

    def __init__(self, agent_pid: int) -> None:
        super().__init__(daemon=True)
        self.agent_pid = agent_pid
        self.load = 0.0
        self.workers = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.load = max(self.load, os.getloadavg()[0])
            self.workers = max(self.workers, self.count())

    def count(self) -> int:
        live = 0
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(fields[1]) == self.agent_pid and b"flyte._runtime" in cmdline and b"--pool" not in cmdline:
                live += 1
        return live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=500)
    parser.add_argument("--cpu", default="2", help="CPU the agent offers (placement's capacity).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flyte-bench-admission-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        (root / "bench_admission_program.py").write_text(PROGRAM)
        env = {**os.environ, "FLYTE_HOME": str(root / "home"), "HOME": str(root / "home")}
        up = subprocess.run(
            [sys.executable, "-m", "flyte.cli", "rig", "up", "--clusters", "bench", "--cpu", args.cpu],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if up.returncode != 0:
            sys.exit(up.stderr)
        os.chdir(root)
        os.environ.update(env)
        sys.path.insert(0, str(root))
        try:
            import bench_admission_program  # type: ignore[import-not-found]

            import flyte

            rig = root / "home" / "rig"
            agent_pid = json.loads((rig / "rig.json").read_text())["pids"]["agent-bench"]
            limits = re.search(r"\(at most .*\)", (rig / "agent-bench.log").read_text())
            flyte.init_from_config()
            flyte.run(bench_admission_program.fan_out, n=2).wait()  # deploy and load the bundle first
            sampler = Sampler(agent_pid)
            sampler.start()
            started = time.monotonic()
            run = flyte.run(bench_admission_program.fan_out, n=args.fanout)
            total = run.outputs()[0]
            seconds = time.monotonic() - started
            sampler.done.set()
            sampler.join()
            failed = [a for a in flyte.remote.Run.get(run.name).actions() if a.phase != "succeeded"]
            print(f"agent: --cpu {args.cpu} {limits.group(0) if limits else ''}; {os.cpu_count()} cores")
            print(f"fan-out of {args.fanout:,} plain no-op tasks with no declared resources")
            print(f"  duration             {seconds:8.1f} s ({args.fanout / seconds:.1f} actions/s)")
            print(f"  max load average     {sampler.load:8.2f} (1 minute)")
            print(f"  max live workers     {sampler.workers:8d} (idle spares included)")
            print(f"  failed actions       {len(failed):8d}; sum {total == sum(range(args.fanout))}")
        finally:
            subprocess.run([sys.executable, "-m", "flyte.cli", "rig", "down"], cwd=root, env=env, capture_output=True)


if __name__ == "__main__":
    main()
