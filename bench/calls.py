"""What one part of the rig does per action, counted: Python calls per action and their own time, from `cProfile`.

    python bench/calls.py gateway --fanout 10000      # per child of a 10,000-way fan-out
    python bench/calls.py worker --chain 3000         # per call of a 3,000-call chain
    python bench/calls.py agent --fanout 2000 --top 60

Runs `bench/vs_ray.py --skip-ray` with one workload (a fan-out, with a 20-call chain before it, or a chain, with a
10-way fan-out after it) on a rig whose processes of the named part (`gateway`, `agent`, or `worker`: the agent's
workers, the pool worker among them) profile every call (`bench/call_probe`). Prints, per action, the calls of each
function called at least half as often as there are actions, by their own time, and the Python calls per action in
all. Actions are counted by a function each part calls once per action (`DIVISOR`), warm-up rounds included; only
processes that ran actions count, and imports are left out (what else a process does once, at start-up, is spread
over the actions: the wider the workload, the less it shows). `poll` is the event loop waiting for something to do.

cProfile counts a coroutine once per resumption, not once per call: an `async def` that suspends at two awaits
shows three calls.

Counts do not move with the machine's load, as timings on a shared 2-core machine do (±30% between runs of the same
code): they tell whether a change does less work per action. The times are cProfile's, inflated by its own cost per
call (~1 us); compare them with each other, not with `vs_ray.py`'s CPU figures.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = HERE / "call_probe"
DIVISOR = {
    "gateway": ("gateway/_runs.py", "_check_inputs"),
    "agent": ("agent/_agent.py", "_start"),
    "worker": ("flyte/_runtime/_bundle.py", "find_task"),
}
"""Per part, a function it calls once per action (a plain function: see the note on coroutines above), as (the end of
its file's path, its name): the gateway checks each child's inputs (and each run's), the agent starts each
assignment, a worker finds each attempt's task."""
_WAITING = "<method 'poll' of 'select.epoll' objects>"
"""The event loop waiting for something to do: not work done for an action."""
_STARTUP = {
    "<built-in method builtins.compile>",
    "<built-in method builtins.exec>",
    "<built-in method builtins.__build_class__>",
}


def profile(part: str, workload: list[str], folder: Path) -> pstats.Stats:
    """Run the workload with `part` profiled; the merged profiles of its processes."""
    env = {**os.environ, "FLYTE_BENCH_CALLS_DIR": str(folder), "FLYTE_BENCH_CALLS_PART": part}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROBE), env.get("PYTHONPATH")) if p)
    # The rig's folder is its bundle's root: the profiles are written beside it, never in it (a file changing there
    # would make a new bundle version, and a new pool).
    rig = folder / "rig"
    rig.mkdir()
    bench = [sys.executable, str(HERE / "vs_ray.py"), "--skip-ray", "--root", str(rig), *workload]
    done = subprocess.run(bench, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the bench failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    # Only the processes that ran actions: a spare worker that only started up would count its imports.
    ran = [stats for p in sorted(folder.glob(f"{part}-*.prof")) if _actions(stats := pstats.Stats(str(p)), part)]
    if not ran:
        sys.exit(f"no {part} process that ran actions wrote a profile")
    merged, *others = ran
    return merged.add(*others)


def _actions(stats: pstats.Stats, part: str) -> int:
    path, name = DIVISOR[part]
    items = stats.stats.items()  # type: ignore[attr-defined]
    return sum(int(nc) for (file, _, fn), (_, nc, *_) in items if fn == name and file.endswith(path))


def show(stats: pstats.Stats, part: str, top: int, by_calls: bool) -> None:
    actions = _actions(stats, part)
    rows = []
    calls = 0
    busy = 0.0
    for (file, line, name), (_, ncalls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "importlib" in file or name in _STARTUP:
            continue  # the process's imports (its start-up, a module first used): not per action
        calls += ncalls
        busy += 0.0 if name == _WAITING else own
        if ncalls >= actions / 2:
            rows.append((own / actions, ncalls / actions, f"{name} ({_short(file)}:{line})"))
    rows.sort(key=lambda row: row[1] if by_calls else row[0], reverse=True)
    print(f"{part}: {actions:,} actions, {calls / actions:,.0f} Python calls per action", end="")
    print(f", {1e6 * busy / actions:,.0f} us of own time per action (waiting in `poll` left out)")
    print(f"{'own us/action':>14}{'calls/action':>14}  function")
    for own, per_action, name in rows[:top]:
        print(f"{1e6 * own:>14.1f}{per_action:>14.2f}  {name[:110]}")


def _short(file: str) -> str:
    """A profiled function's file as a reader knows it: ours from the repository's root (the SDK's from its package),
    a library's from its package."""
    root = f"{HERE.parent}/"
    if file.startswith(root):
        return file.removeprefix(root).removeprefix("sdk/")
    if "/site-packages/" in file:
        return file.rpartition("/site-packages/")[2]
    return re.sub(r"^.*/lib/python3\.\d+/", "", file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(DIVISOR))
    shape = parser.add_mutually_exclusive_group(required=True)
    shape.add_argument("--fanout", type=int, help="an N-way fan-out of no-op children on the warm pool")
    shape.add_argument("--chain", type=int, help="N sequential child calls on the warm pool")
    parser.add_argument("--top", type=int, default=40, help="functions shown (default 40)")
    parser.add_argument("--by-calls", action="store_true", help="order by calls per action, not own time")
    args = parser.parse_args()
    workload = (
        ["--fanout", str(args.fanout), "--chain", "20"]
        if args.fanout
        else ["--fanout", "10", "--chain", str(args.chain)]
    )
    with tempfile.TemporaryDirectory(prefix="flyte-calls-") as folder:
        show(profile(args.part, workload, Path(folder)), args.part, args.top, args.by_calls)


if __name__ == "__main__":
    main()
