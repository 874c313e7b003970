"""Placement properties (hypothesis): deterministic and order-independent, never a filtered cluster, never more than
free capacity, never-fits exactly when nothing could ever fit, spread and tiers as written, and the default policy
choosing as the first slice did."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import DEFAULT_POLICY, ClusterSnapshot, Decision, Demand, Policy, place

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
FULL = Policy.model_validate(
    {
        "version": "full",
        "weights": {"warm": 3, "locality": 2, "least_loaded": 1, "bin_packing": 1, "cost": 1, "spread": 2},
        "tiers": [
            {"name": "east", "regions": ["us-east-*"]},
            {"name": "us", "regions": ["us-*"], "after_seconds": 30},
            {"name": "gcp", "clouds": ["gcp"], "after_seconds": 60},
        ],
        "queues": {"batch": ["c1*", "tier=batch"]},
    }
)
SPREAD = Policy.model_validate({"version": "s", "weights": {"warm": 0, "least_loaded": 0, "spread": 1}})


def cluster(name: str, seed: int) -> ClusterSnapshot:
    """A cluster derived from one drawn seed: cheap to generate, so each example can hold many."""
    rng = random.Random(seed)
    capacity = {"cpu": float(rng.randint(0, 64)), "memory": float(rng.randint(0, 8))}
    capacity["gpu:A100"] = float(rng.choice((0, 0, 2, 8)))
    return ClusterSnapshot(
        name=name,
        region=rng.choice(REGIONS),
        cloud=rng.choice(("aws", "gcp")),
        capacity=capacity,
        free={k: float(rng.randint(0, int(v))) for k, v in capacity.items()},
        warm=rng.choice(({}, {"e@1": 1}, {"e@1": 0})),
        healthy=rng.random() < 0.8,
        cordoned=rng.random() < 0.2,
        labels=rng.choice(({}, {"tier": "batch"}, {"residency": "eu"})),
        cost_per_cpu_hour=rng.choice((0.01, 0.02, 0.05)),
        cost_per_gpu_hour=rng.choice((1.0, 2.5)),
        pools=rng.choice(((), ("batch",))),
        placed_counts={"fan": rng.randint(0, 4)},
    )


clusters = st.dictionaries(st.integers(0, 99), st.integers(0, 2**32), max_size=40).map(
    lambda seeds: [cluster(f"c{n:02d}", seed) for n, seed in sorted(seeds.items())]
)
demands = st.builds(
    Demand,
    cpu=st.integers(0, 48).map(float),
    memory=st.integers(0, 6),
    gpu=st.sampled_from((0, 0, 1, 4)),
    gpu_type=st.sampled_from((None, "A100")),
    warm_key=st.sampled_from((None, "e@1")),
    regions=st.sampled_from(((), ("us-east-1", "us-west-2"))),
    clouds=st.sampled_from(((), ("aws",))),
    avoid=st.sampled_from(((), ("c01", "c02"))),
    avoid_labels=st.sampled_from(((), (("residency", "eu"),))),
    queue=st.sampled_from((None, "batch")),
    parent_cluster=st.sampled_from((None, "c03")),
    waited_seconds=st.sampled_from((0.0, 30.0, 100.0)),
    spread_key=st.sampled_from((None, "fan")),
)
policies = st.sampled_from((DEFAULT_POLICY, FULL))


def gpu_key(d: Demand) -> str:
    return f"gpu:{d.gpu_type}" if d.gpu_type else "gpu"


def allowed(d: Demand, c: ClusterSnapshot, policy: Policy) -> bool:
    """Where the demand may run by placement, queue and policy tier (FULL's tiers), whatever the cluster's state."""
    ok = (
        (not d.regions or c.region in d.regions)
        and (not d.clouds or c.cloud in d.clouds)
        and c.name not in d.avoid
        and not (d.avoid_labels and c.labels.get("residency") == "eu")
    )
    if d.queue is not None:
        by_policy = policy is FULL and (c.name.startswith("c1") or c.labels.get("tier") == "batch")
        ok = ok and ("batch" in c.pools or by_policy)
    return ok and (policy is not FULL or tier(c) is not None)


def tier(c: ClusterSnapshot) -> int | None:
    if c.region.startswith("us-east-"):
        return 0
    if c.region.startswith("us-"):
        return 1
    return 2 if c.cloud == "gcp" else None


def holds(d: Demand, amounts: Mapping[str, float]) -> bool:
    needs = (("cpu", d.cpu), ("memory", float(d.memory)), (gpu_key(d), float(d.gpu)))
    return all(need <= 0 or amounts.get(key, 0.0) >= need for key, need in needs)


def can_now(d: Demand, c: ClusterSnapshot, policy: Policy) -> bool:
    open_ = policy is not FULL or FULL.tiers[tier(c) or 0].after_seconds <= d.waited_seconds
    return allowed(d, c, policy) and c.healthy and not c.cordoned and open_ and holds(d, c.free)


@settings(max_examples=100, deadline=None)
@given(demands, clusters, policies, st.randoms(use_true_random=False))
def test_deterministic_and_order_independent(d: Demand, cs: list[ClusterSnapshot], policy: Policy, rnd) -> None:  # type: ignore[no-untyped-def]
    first = place(d, cs, policy)
    assert place(d, cs, policy) == first
    shuffled = list(cs)
    rnd.shuffle(shuffled)
    again = place(d, shuffled, policy)
    assert (again.cluster, again.never_fits, again.reason, again.verdicts, again.scores) == (
        first.cluster,
        first.never_fits,
        first.reason,
        first.verdicts,
        first.scores,
    )
    assert set(first.verdicts) == {c.name for c in cs}
    assert first.policy_version == policy.version


@settings(max_examples=100, deadline=None)
@given(demands, clusters, policies)
def test_never_a_filtered_cluster_nor_more_than_free(d: Demand, cs: list[ClusterSnapshot], policy: Policy) -> None:
    decision = place(d, cs, policy)
    fitting = {c.name for c in cs if can_now(d, c, policy)}
    if decision.cluster is None:
        assert not fitting
        return
    chosen = next(c for c in cs if c.name == decision.cluster)
    assert can_now(d, chosen, policy)
    assert holds(d, chosen.free)  # never more than free capacity
    assert decision.verdicts[chosen.name] == "chosen"
    assert decision.scores[chosen.name] == max(decision.scores.values())
    assert all(0.0 <= s <= 1.0 + 1e-9 for s in decision.scores.values())
    for name, verdict in decision.verdicts.items():
        assert (verdict in ("fits", "chosen") or verdict.startswith("fits, later tier")) == (name in fitting)


def could_ever(d: Demand, c: ClusterSnapshot, policy: Policy) -> bool:
    return allowed(d, c, policy) and holds(d, c.capacity)


@settings(max_examples=100, deadline=None)
@given(demands, clusters, policies)
def test_never_fits_exactly_when_no_cluster_could_ever(d: Demand, cs: list[ClusterSnapshot], policy: Policy) -> None:
    decision = place(d, cs, policy)
    assert decision.never_fits == (bool(cs) and not any(could_ever(d, c, policy) for c in cs))
    if decision.never_fits:
        assert decision.cluster is None
        assert decision.reason.startswith("no cluster ")
    # emptied, healthy, uncordoned and waited long enough, a not-never demand finds a place
    emptied = [dataclasses.replace(c, free=c.capacity, healthy=True, cordoned=False) for c in cs]
    later = place(dataclasses.replace(d, waited_seconds=1e9), emptied, policy)
    assert (later.cluster is not None) == (bool(cs) and not decision.never_fits)


@settings(max_examples=100, deadline=None)
@given(demands, clusters, policies)
def test_tiers_earliest_open_tier_with_room(d: Demand, cs: list[ClusterSnapshot], policy: Policy) -> None:
    decision = place(d, cs, policy)
    if policy is DEFAULT_POLICY or decision.cluster is None:
        return
    chosen = next(c for c in cs if c.name == decision.cluster)
    t = tier(chosen)
    assert t is not None
    assert FULL.tiers[t].after_seconds <= d.waited_seconds
    assert decision.tier == FULL.tiers[t].name
    assert all(tier(c) >= t for c in cs if can_now(d, c, policy))  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(demands, clusters)
def test_spread_alone_picks_fewest_placed(d: Demand, cs: list[ClusterSnapshot]) -> None:
    policy = SPREAD
    d = dataclasses.replace(d, spread_key="fan")
    decision = place(d, cs, policy)
    fitting = [c for c in cs if can_now(d, c, policy)]
    if not fitting:
        assert decision.cluster is None
        return
    fewest = min(c.placed_counts["fan"] for c in fitting)
    assert decision.cluster == min(c.name for c in fitting if c.placed_counts["fan"] == fewest)


def old_place(demand: Demand, clusters: Sequence[ClusterSnapshot]) -> tuple[str | None, bool]:
    """The first slice's choice (before the policy engine), for comparison."""
    candidates, could = [], False
    for c in clusters:
        placement_ok = (
            (not demand.clusters or c.name in demand.clusters)
            and c.name not in demand.avoid
            and (not demand.regions or c.region in demand.regions)
            and (not demand.clouds or c.cloud in demand.clouds)
        )
        if not (placement_ok and holds(demand, c.capacity)):
            continue
        could = True
        if c.healthy and not c.cordoned and holds(demand, c.free):
            candidates.append(c)
    if not candidates:
        return None, bool(clusters) and not could

    def score(c: ClusterSnapshot) -> tuple[int, float, str]:
        warm = 1 if demand.warm_key and c.warm.get(demand.warm_key, 0) > 0 else 0
        return (-warm, -c.free.get("cpu", 0.0) / (c.capacity.get("cpu", 0.0) or 1.0), c.name)

    return min(candidates, key=score).name, False


old_demands = st.builds(
    Demand,
    cpu=st.integers(0, 48).map(float),
    memory=st.integers(0, 6),
    gpu=st.sampled_from((0, 1, 4)),
    gpu_type=st.sampled_from((None, "A100")),
    warm_key=st.sampled_from((None, "e@1")),
    clusters=st.sampled_from(((), ("c01", "c05", "c50"))),
    regions=st.sampled_from(((), ("us-east-1", "us-west-2"))),
    clouds=st.sampled_from(((), ("aws",))),
    avoid=st.sampled_from(((), ("c01", "c02"))),
)


@settings(max_examples=100, deadline=None)
@given(old_demands, clusters)
def test_default_policy_chooses_as_the_first_slice(d: Demand, cs: list[ClusterSnapshot]) -> None:
    decision: Decision = place(d, cs)
    assert (decision.cluster, decision.never_fits) == old_place(d, cs)
