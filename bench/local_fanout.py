"""Local-mode dispatch: a parent fanning out to N no-op children, and a chain of sequential calls.

    python bench/local_fanout.py [--repeat 3]

Prints children per second for each fan-out width and milliseconds per call for the chain. Every child crosses a
full action boundary: deterministic naming, input and output encoding and decoding, the action record, the phase
events. Timing only; never part of pass/fail. Target: >= 5,000 children/s for N = 1,000 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

import flyte

env = flyte.TaskEnvironment("bench_local_fanout")


@env.task
async def noop(i: int) -> int:
    return i


@env.task
async def fan_out(n: int) -> int:
    results = await asyncio.gather(*(noop(i) for i in range(n)))
    return len(results)


@env.task
async def chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


def timed(task: object, **inputs: int) -> float:
    start = time.perf_counter()
    run = flyte.run(task, **inputs)  # type: ignore[arg-type]
    run.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the table shows the median")
    args = parser.parse_args()
    os.environ.setdefault("FLYTE_HOME", tempfile.mkdtemp(prefix="flyte-bench-"))
    flyte.init()
    timed(fan_out, n=100)  # warm up: imports, the SDK loop thread, adapters

    print(f"{'workload':<24}{'median s':>10}{'children/s':>14}{'ms/call':>10}")
    for n in (100, 1_000, 10_000):
        seconds = statistics.median(timed(fan_out, n=n) for _ in range(args.repeat))
        print(f"{'fan-out ' + format(n, ','):<24}{seconds:>10.3f}{n / seconds:>14,.0f}{1000 * seconds / n:>10.3f}")
    n = 100
    seconds = statistics.median(timed(chain, n=n) for _ in range(args.repeat))
    print(f"{'chain 100 sequential':<24}{seconds:>10.3f}{n / seconds:>14,.0f}{1000 * seconds / n:>10.3f}")


if __name__ == "__main__":
    main()
