"""Placement throughput: `place` decisions per second with 100 and 1,000 synthetic clusters.

    python bench/placement.py [--seconds 2] [--sizes 100,1000]

Two policies: the built-in default (filters, warm pool, most free CPU) and a full one (all six scorers, three
fallback tiers, a queue pool, a project quota). Each round passes one snapshot list, as a dispatcher pass does, so
the placement filters and tiers are judged once per list and demand placement. Targets: >= 10,000/s at 100
clusters, >= 1,000/s at 1,000.
Timing only; never part of pass/fail.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

from policies import DEFAULT_POLICY, ClusterSnapshot, Demand, Policy, place

REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "ap-south-1")
CLOUDS = ("aws", "gcp")

FULL = Policy.model_validate(
    {
        "version": "bench-full",
        "weights": {"warm": 4, "locality": 2, "least_loaded": 1, "bin_packing": 0.5, "cost": 1, "spread": 1},
        "tiers": [
            {"name": "us-east", "regions": ["us-east-*"]},
            {"name": "us", "regions": ["us-*"], "after_seconds": 30},
            {"name": "anywhere", "after_seconds": 120},
        ],
        "queues": {"batch": ["tier=batch", "c000*"]},
        "projects": {"ml": {"weight": 2, "priority": 1, "quota": {"cpu": 100000}}},
    }
)


def clusters(n: int, seed: int = 7) -> list[ClusterSnapshot]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cpu = float(rng.choice((32, 64, 128, 256)))
        capacity = {"cpu": cpu, "memory": cpu * 4 * 2**30, "gpu:A100": float(rng.choice((0, 0, 8)))}
        free = {k: v * rng.random() for k, v in capacity.items()}
        out.append(
            ClusterSnapshot(
                name=f"c{i:05d}",
                region=rng.choice(REGIONS),
                cloud=rng.choice(CLOUDS),
                capacity=capacity,
                free=free,
                warm={"env@v1": 1} if rng.random() < 0.1 else {},
                cordoned=rng.random() < 0.02,
                labels={"tier": rng.choice(("batch", "online"))},
                cost_per_cpu_hour=rng.uniform(0.02, 0.06),
                cost_per_gpu_hour=rng.uniform(1.0, 3.0),
                pools=("batch",) if rng.random() < 0.5 else (),
                placed_counts={"fanout": rng.randrange(5)},
            )
        )
    return out


def rates(seconds: float, demand: Demand, snaps: Sequence[ClusterSnapshot], policy: Policy) -> tuple[float, float]:
    """(best, median) decisions/s over rounds of back-to-back calls filling `seconds`: best is the least disturbed
    by other load on the machine."""
    per_round = max(1, round(20_000 / len(snaps)))
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(per_round):
            place(demand, snaps, policy)
        samples.append(per_round / (time.perf_counter() - start))
    return max(samples), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    simple = Demand(cpu=2, memory=2**30, warm_key="env@v1")
    full = Demand(
        cpu=2,
        memory=2**30,
        warm_key="env@v1",
        project="ml",
        queue="batch",
        parent_cluster="c00003",
        waited_seconds=200,
        spread_key="fanout",
    )
    print(f"{'clusters':>8}  {'policy':<8}  {'best/s':>10}  {'median/s':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        snaps = clusters(size)
        for label, demand, policy in (("default", simple, DEFAULT_POLICY), ("full", full, FULL)):
            best, median = rates(args.seconds, demand, snaps, policy)
            print(f"{size:>8}  {label:<8}  {best:>10,.0f}  {median:>10,.0f}")


if __name__ == "__main__":
    main()
