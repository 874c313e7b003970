"""Where a sequential child call's time goes, read from its run's trace: one step per hop of the critical path.

    python bench/chain_breakdown.py [--chain 200] [--root DIR]

Brings up a rig like `bench/vs_ray.py` (`flyte rig up`: a gateway on SQLite and one agent, separate processes, one
machine, so their clocks agree), runs its parent task calling C no-op children one after another on the warm pool,
reads the run's trace from the gateway, and prints for each step of a call the median and p90 over the calls:

    call -> created        the parent's worker sends the submission; the gateway starts the child's action span
    created -> placed      the gateway validates, commits (and fsyncs) the child, placed in that commit
    placed -> received     the assignment travels to the agent, which starts the attempt's span; for a child given
                           to its parent's worker (`GatewayReply.here`), the answer travels to that worker
    received -> started    the agent hands it to the pool worker, which starts the task (its start-up span); for a
                           child given here, the worker's start-up alone
    task                   the user's function
    task end -> ended      the worker reports; the gateway commits (and fsyncs) the end
    ended -> returned      the end reaches the parent's worker, whose call returns

Timing only; never pass/fail. The chain target (issue 17): p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from remote_dispatch import percentile  # a sibling script: bench/ is on sys.path when a bench runs
from vs_ray import OURS, rig_down, rig_up

STEPS = (
    "call -> created",
    "created -> placed",
    "placed -> received",
    "received -> started",
    "task",
    "task end -> ended",
    "ended -> returned",
)


def breakdown(spans: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each step's milliseconds, one value per call whose spans are all in the trace."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["parent_span_id"]].append(span)

    def child(of: dict[str, Any], prefix: str) -> dict[str, Any] | None:
        return next((s for s in children[of["span_id"]] if s["name"].startswith(prefix)), None)

    steps: dict[str, list[float]] = defaultdict(list)
    for call in (s for s in spans if s["name"].startswith("call")):
        action = next((s for s in children[call["span_id"]] if s["name"].endswith(".noop")), None)
        queued = action and child(action, "queued")
        attempt = action and child(action, "attempt")
        # A child given to its parent's worker hangs its spans under the action's, not its agent's attempt span:
        # it is received where its start-up span starts.
        under = attempt if attempt and child(attempt, "task") else action
        started = under and child(under, "start-up")
        task = under and child(under, "task")
        if not (action and queued and under and started and task):
            continue
        points = (
            call["start_ns"],
            action["start_ns"],
            queued["end_ns"],
            under["start_ns"] if under is attempt else started["start_ns"],
            started["end_ns"],
            task["end_ns"],
            action["end_ns"],
            call["end_ns"],
        )
        for step, (begin, end) in zip(STEPS, itertools.pairwise(points), strict=True):
            steps[step].append((end - begin) / 1e6)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--root", type=Path, help="folder for the rig (default: a new temporary one)")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="flyte-chain-"))
    env = rig_up(root, OURS)
    try:
        import vs_ray_program  # type: ignore[import-not-found]

        import flyte
        from flyte._client import call_sync, client_for

        flyte.init_from_config()
        flyte.run(vs_ray_program.chain, n=20).wait()  # warm up: deploy, start the pool, load the bundle
        run = flyte.run(vs_ray_program.chain, n=args.chain)
        latencies = run.outputs()[0]
        deadline = time.monotonic() + 30
        while True:
            # Spans arrive in batches (every half second): wait until every call's are in.
            spans = call_sync(client_for().request("GET", f"/api/v1/runs/{run.name}/trace"))["spans"]
            steps = breakdown(spans)
            if len(steps.get("task", [])) >= args.chain or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        rig_down(env)
    if not steps:
        sys.exit("no call had all its spans in the trace (is tracing off? FLYTE_TRACING=0)")
    p50 = 1000 * statistics.median(latencies)
    print(f"\n{args.chain} calls, {len(steps['task'])} with every span; call p50 {p50:.3f} ms")
    print(f"{'step':<24}{'p50 ms':>10}{'p90 ms':>10}")
    for step in STEPS:
        values = steps[step]
        print(f"{step:<24}{statistics.median(values):>10.3f}{percentile(values, 0.9):>10.3f}")


if __name__ == "__main__":
    main()
