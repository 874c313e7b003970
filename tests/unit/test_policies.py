"""Placement examples: the default policy keeps the first slice's behaviour, never-fits vs not-now, filters, tiers
opening over time, spread, cost, quotas, fair share, the policy file's errors, and `explain`."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from policies import (
    DEFAULT_POLICY,
    ClusterSnapshot,
    Decision,
    Demand,
    Policy,
    explain,
    fair_share_order,
    load_policy,
    parse_policy,
    place,
)


def snap(name: str, cpu: float = 8, free_cpu: float | None = None, **kw: object) -> ClusterSnapshot:
    capacity = {"cpu": float(cpu), "memory": 64e9, **kw.pop("capacity_extra", {})}  # type: ignore[dict-item]
    free = {"cpu": float(cpu if free_cpu is None else free_cpu), "memory": 64e9, **kw.pop("free_extra", {})}  # type: ignore[dict-item]
    kw.setdefault("region", "us-east-1")
    kw.setdefault("cloud", "aws")
    return ClusterSnapshot(name=name, capacity=capacity, free=free, **kw)  # type: ignore[arg-type]


def synthetic(n: int, seed: int = 1) -> list[ClusterSnapshot]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cpu = float(rng.choice((4, 16, 64)))
        out.append(
            snap(
                f"c{i:04d}",
                cpu=cpu,
                free_cpu=float(rng.randrange(int(cpu) + 1)),
                region=rng.choice(("us-east-1", "us-west-2", "eu-west-1")),
                cloud=rng.choice(("aws", "gcp")),
                warm={"env@v1": 1} if rng.random() < 0.05 else {},
                healthy=rng.random() > 0.05,
                cordoned=rng.random() < 0.05,
                labels={"residency": rng.choice(("eu", "us"))},
            )
        )
    return out


# --- the default policy keeps the old behaviour ---------------------------------------------------------------


def test_default_warm_first_then_most_free_cpu_fraction_then_name() -> None:
    clusters = [snap("b", cpu=10, free_cpu=9), snap("a", cpu=10, free_cpu=1, warm={"e@1": 1}), snap("c", 10, 9)]
    assert place(Demand(cpu=1, warm_key="e@1"), clusters).cluster == "a"
    assert place(Demand(cpu=1), clusters).cluster == "b"  # b and c tie on 0.9: by name
    assert place(Demand(cpu=1), [snap("x", cpu=100, free_cpu=50), snap("y", cpu=4, free_cpu=3)]).cluster == "y"


def test_gateway_call_shape_still_works() -> None:
    demand = Demand(
        cpu=1.0, memory=1, gpu=0, gpu_type=None, warm_key=None, clusters=(), regions=(), clouds=(), avoid=()
    )
    one = ClusterSnapshot(
        name="k", region="r", cloud="c", capacity={"cpu": 2}, free={"cpu": 2, "memory": 5}, warm={}, cordoned=False
    )
    one_mem = ClusterSnapshot(
        name="m", region="r", cloud="c", capacity={"cpu": 2, "memory": 5}, free={"cpu": 2, "memory": 5}
    )
    decision = place(demand, [one, one_mem])
    assert (decision.cluster, decision.never_fits) == ("m", False)
    assert decision.verdicts["k"].startswith("too small: memory")
    assert decision.policy_version == DEFAULT_POLICY.version
    assert set(decision.scores) == {"m"}
    assert Decision("x", False, "r", {}).scores == {}


def test_no_clusters_waits() -> None:
    decision = place(Demand(cpu=1), [])
    assert (decision.cluster, decision.never_fits) == (None, False)


# --- never fits vs not now ---------------------------------------------------------------------------------------


def test_never_fits_names_the_gpu() -> None:
    clusters = [snap("a", capacity_extra={"gpu:T4": 4.0}), snap("b", capacity_extra={"gpu:A100": 1.0})]
    decision = place(Demand(cpu=1, gpu=2, gpu_type="A100"), clusters)
    assert decision.never_fits
    assert decision.reason == "no cluster has cpu 1, gpu A100:2"
    assert decision.verdicts["b"] == "too small: gpu:A100 2 > 1"


def test_never_fits_names_the_placement() -> None:
    decision = place(Demand(cpu=1, regions=("ap-south-1",)), [snap("a"), snap("b")])
    assert decision.never_fits
    assert decision.reason == "no cluster is in regions ['ap-south-1']"
    decision = place(Demand(cpu=64, regions=("us-east-1",)), [snap("a"), snap("big", cpu=128, region="eu")])
    assert decision.reason == "no cluster has cpu 64 that is in regions ['us-east-1']"


def test_not_now_when_busy_unhealthy_cordoned_or_tier_closed() -> None:
    clusters = [snap("busy", free_cpu=0), snap("sick", healthy=False), snap("cordoned", cordoned=True)]
    decision = place(Demand(cpu=1), clusters)
    assert (decision.cluster, decision.never_fits) == (None, False)
    assert decision.verdicts == {"busy": "busy: cpu 1 > 0", "sick": "unhealthy", "cordoned": "cordoned"}
    assert "busy: 1" in decision.reason
    assert "cordoned: 1" in decision.reason


def test_hundreds_of_clusters() -> None:
    clusters = synthetic(500)
    demand = Demand(cpu=8, regions=("us-east-1", "us-west-2"), avoid_labels=(("residency", "eu"),))
    decision = place(demand, clusters)
    assert decision.cluster is not None
    assert len(decision.verdicts) == 500
    chosen = next(c for c in clusters if c.name == decision.cluster)
    assert chosen.healthy
    assert not chosen.cordoned
    assert chosen.free["cpu"] >= 8
    assert chosen.region != "eu-west-1"
    assert chosen.labels["residency"] == "us"
    fitting = [c for c in clusters if decision.verdicts[c.name] in ("fits", "chosen")]
    assert len(fitting) > 10
    best = max(fitting, key=lambda c: (c.free["cpu"] / c.capacity["cpu"], [-ord(ch) for ch in c.name]))
    assert decision.cluster == best.name


# --- filters -----------------------------------------------------------------------------------------------------


def test_label_affinity_anti_affinity_and_queue_pools() -> None:
    policy = Policy(version="q", queues={"gpu": ("g-*", "pool=gpu")})
    clusters = [
        snap("a", labels={"residency": "eu"}),
        snap("b", labels={"residency": "us", "pool": "gpu"}),
        snap("g-1"),
        snap("d", pools=("gpu",), free_cpu=1),
    ]
    assert place(Demand(cpu=1, labels=(("residency", "eu"),)), clusters, policy).cluster == "a"
    decision = place(Demand(cpu=1, avoid_labels=(("residency", "eu"),)), clusters, policy)
    assert decision.verdicts["a"] == "has avoided label residency=eu"
    decision = place(Demand(cpu=1, queue="gpu"), clusters, policy)
    assert decision.verdicts["a"] == "not in queue pool 'gpu'"
    assert {k for k, v in decision.verdicts.items() if v in ("fits", "chosen")} == {"b", "g-1", "d"}
    never = place(Demand(cpu=1, queue="nope"), clusters, policy)
    assert never.never_fits
    assert never.reason == "no cluster is in queue pool 'nope'"


def test_quota_never_and_not_now() -> None:
    policy = Policy(version="p", projects={"ml": {"quota": {"cpu": 10}}})  # type: ignore[dict-item]
    clusters = [snap("a", cpu=64)]
    never = place(Demand(cpu=12, project="ml"), clusters, policy)
    assert never.never_fits
    assert "quota cpu 10 < demand 12" in never.reason
    wait = place(Demand(cpu=4, project="ml"), clusters, policy, usage={"ml": {"cpu": 8}})
    assert (wait.cluster, wait.never_fits) == (None, False)
    assert "over quota" in wait.reason
    assert place(Demand(cpu=4, project="ml"), clusters, policy, usage={"ml": {"cpu": 6}}).cluster == "a"


def test_a_pools_action_joins_a_replica_with_a_free_slot_without_room_and_opens_one_only_where_it_fits() -> None:
    key = "ml/development/env@v1"
    pool = Demand(cpu=4, project="ml", warm_key="env@v1", pool_key=key, pool_concurrency=3, pool_max_replicas=2)
    # One replica with 2 of its 3 slots taken on a full cluster: the action joins it there (a warm replica).
    full = snap("full", cpu=8, free_cpu=0, pool_in_flight={key: 2})
    empty = snap("empty", cpu=8, free_cpu=8)
    joined = place(pool, [full, empty])
    assert (joined.cluster, joined.verdicts["empty"]) == ("full", "fits")
    # Its replica is full: a second replica needs 4 cpu, which only the empty cluster has.
    opened = place(pool, [snap("full", cpu=8, free_cpu=0, pool_in_flight={key: 3}), empty])
    assert opened.cluster == "empty"
    assert opened.verdicts["full"].startswith("busy: cpu")
    # Every replica full (2 x 3 slots): no more of the pool's actions go there, whatever the room.
    at_max = place(pool, [snap("roomy", cpu=64, free_cpu=64, pool_in_flight={key: 6})])
    assert (at_max.cluster, at_max.never_fits) == (None, False)
    assert at_max.verdicts["roomy"] == "busy: its pool is full (6 of 6 slots in flight)"
    # Another project's pool of the same environment is another pool.
    assert place(pool, [snap("other", cpu=8, free_cpu=8, pool_in_flight={"etl/development/env@v1": 6})]).cluster


def test_a_full_pool_takes_more_to_wait_on_its_agent_as_deep_as_the_policy_says_when_none_has_room() -> None:
    key = "ml/development/env@v1"
    pool = Demand(cpu=4, project="ml", warm_key="env@v1", pool_key=key, pool_concurrency=3, pool_max_replicas=2)
    deep = Policy(version="deep", pool_queue_depth=3)
    # The default: a full pool's actions wait in the gateway's queue.
    assert place(pool, [snap("full", cpu=64, pool_in_flight={key: 6})]).cluster is None
    # Three actions per slot: a full pool on the only cluster takes them, up to 18 in flight, to wait there.
    waits = place(pool, [snap("full", cpu=64, pool_in_flight={key: 6})], deep)
    assert (waits.cluster, waits.never_fits) == ("full", False)
    assert waits.verdicts["full"] == "chosen: waits there for a slot (6 of 6 slots in flight)"
    assert place(pool, [snap("full", cpu=64, pool_in_flight={key: 17})], deep).cluster == "full"
    deepest = place(pool, [snap("full", cpu=64, pool_in_flight={key: 18})], deep)
    assert (deepest.cluster, deepest.verdicts["full"]) == (None, "busy: its pool is full (18 of 6 slots in flight)")
    # Only when nothing has room now: a cluster where its pool can open a replica goes first.
    roomy = snap("roomy", cpu=8, free_cpu=8)
    assert place(pool, [snap("full", cpu=64, pool_in_flight={key: 6}), roomy], deep).cluster == "roomy"
    # Among full pools, the one with the fewest in flight; a cordoned or unhealthy cluster takes none.
    fuller, emptier = snap("a", pool_in_flight={key: 9}), snap("b", pool_in_flight={key: 7})
    assert place(pool, [fuller, emptier], deep).cluster == "b"
    shut = [dataclasses.replace(emptier, cordoned=True), dataclasses.replace(fuller, healthy=False)]
    assert place(pool, shut, deep).cluster is None


@pytest.mark.parametrize("depth", ["0", "65", "two"])
def test_a_pool_queue_depth_out_of_range_is_refused_with_its_line(depth: str) -> None:
    with pytest.raises(ValueError, match=r"policy line 2: field pool_queue_depth"):
        parse_policy(f"version: t\npool_queue_depth: {depth}\n")


def test_a_project_at_its_quota_still_joins_its_pools_replicas_but_opens_none() -> None:
    policy = Policy(version="p", projects={"ml": {"quota": {"cpu": 8}}})  # type: ignore[dict-item]
    key = "ml/development/env@v1"
    pool = Demand(cpu=4, project="ml", pool_key=key, pool_concurrency=3, pool_max_replicas=4)
    usage = {"ml": {"cpu": 8.0}}
    clusters = [snap("a", cpu=64, pool_in_flight={key: 3}), snap("b", cpu=64, pool_in_flight={key: 4})]
    joined = place(pool, clusters, policy, usage=usage)
    assert joined.cluster == "b"
    assert joined.verdicts["a"].startswith("fits, over quota")
    waits = place(pool, [snap("a", cpu=64, pool_in_flight={key: 3})], policy, usage=usage)
    assert (waits.cluster, waits.never_fits) == (None, False)
    assert "over quota" in waits.reason


# --- tiers, scorers ----------------------------------------------------------------------------------------------

TIERED = Policy.model_validate(
    {
        "version": "tiers",
        "tiers": [
            {"name": "us-east", "regions": ["us-east-*"]},
            {"name": "us", "regions": ["us-*"], "after_seconds": 60},
            {"name": "anywhere", "after_seconds": 300},
        ],
    }
)


def test_tiers_open_over_time() -> None:
    clusters = [snap("east", region="us-east-1", free_cpu=0), snap("west", region="us-west-2"), snap("eu", region="eu")]
    demand = Demand(cpu=1)
    first = place(demand, clusters, TIERED)
    assert (first.cluster, first.never_fits) == (None, False)
    assert first.verdicts["west"] == "tier closed: us opens after 60s, queued 0s"
    assert place(Demand(cpu=1, waited_seconds=60), clusters, TIERED).cluster == "west"
    assert place(Demand(cpu=1, waited_seconds=300, regions=("eu",)), clusters, TIERED).cluster == "eu"
    assert place(Demand(cpu=1, waited_seconds=299, regions=("eu",)), clusters, TIERED).cluster is None


def test_earlier_tier_preferred_once_later_open() -> None:
    clusters = [snap("east", region="us-east-1", free_cpu=1), snap("west", region="us-west-2")]
    decision = place(Demand(cpu=1, waited_seconds=1000), clusters, TIERED)
    assert (decision.cluster, decision.tier) == ("east", "us-east")
    assert decision.verdicts["west"] == "fits, later tier: us after us-east"


def test_cluster_in_no_tier_is_filtered() -> None:
    policy = Policy.model_validate({"version": "v", "tiers": [{"name": "us", "regions": ["us-*"]}]})
    decision = place(Demand(cpu=1), [snap("eu", region="eu-west-1")], policy)
    assert decision.never_fits
    assert decision.reason == "no cluster is in a tier of the policy"


def test_spread_prefers_fewest_placed() -> None:
    policy = Policy(version="s", weights={"warm": 0, "least_loaded": 0, "spread": 1})  # type: ignore[arg-type]
    clusters = [snap(n, placed_counts={"fan": k}) for n, k in (("a", 3), ("b", 1), ("c", 2), ("d", 1))]
    decision = place(Demand(cpu=1, spread_key="fan"), clusters, policy)
    assert decision.cluster == "b"
    assert decision.scores == {"a": 0.0, "b": 1.0, "c": 0.5, "d": 1.0}


def test_cost_locality_and_bin_packing() -> None:
    cheap = Policy(version="c", weights={"warm": 0, "least_loaded": 0, "cost": 1})  # type: ignore[arg-type]
    clusters = [snap("a", cost_per_cpu_hour=0.05), snap("b", cost_per_cpu_hour=0.02, free_cpu=1)]
    assert place(Demand(cpu=1), clusters, cheap).cluster == "b"
    local = Policy(version="l", weights={"locality": 5})  # type: ignore[arg-type]
    assert place(Demand(cpu=1, parent_cluster="b"), clusters, local).cluster == "b"
    pack = Policy(version="p", weights={"warm": 0, "least_loaded": 0, "bin_packing": 1})  # type: ignore[arg-type]
    assert place(Demand(cpu=1), [snap("a", free_cpu=8), snap("b", free_cpu=2)], pack).cluster == "b"


# --- fair share --------------------------------------------------------------------------------------------------


def test_fair_share_priority_then_share_then_fifo() -> None:
    policy = Policy.model_validate(
        {"version": "f", "projects": {"ml": {"weight": 3}, "web": {"weight": 1}, "ops": {"priority": 5}}}
    )
    pending = [
        ("ml1", Demand(cpu=1, project="ml")),
        ("ml2", Demand(cpu=1, project="ml")),
        ("web1", Demand(cpu=1, project="web")),
        ("ml3", Demand(cpu=1, project="ml")),
        ("web2", Demand(cpu=1, project="web")),
        ("urgent", Demand(cpu=1, project="web", priority=9)),
        ("ops1", Demand(cpu=1, project="ops")),
    ]
    order = fair_share_order(pending, {"ml": 6.0}, policy)
    assert order[:2] == ["ops1", "urgent"]  # project priority, then the action's
    # urgent charged web 1 cpu: web 1/1 < ml 6/3, so web1; then both at 2: FIFO gives ml1 (ml 7/3); then web2
    # (web 2 < 2.33, web 3 after); then ml2, ml3 in arrival order
    assert order[2:] == ["web1", "ml1", "web2", "ml2", "ml3"]
    assert fair_share_order([], {}, policy) == []


# --- the policy file ---------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_load_policy_ok(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            "version: v7\nweights:\n  cost: 2\ntiers:\n  - name: east\n    regions: [us-east-1]\n"
            "queues:\n  gpu: [g1, 'pool=gpu']\nprojects:\n  ml: {weight: 2, quota: {gpu: 8}}\n",
        )
    )
    assert policy.version == "v7"
    assert policy.weights.cost == 2
    assert policy.tiers[0].name == "east"
    assert policy.projects["ml"].quota.gpu == 8
    assert place(Demand(cpu=1), [snap("a")], policy).policy_version == "v7"


def test_load_policy_names_line_and_field(tmp_path: Path) -> None:
    text = "version: v1\ntiers:\n  - name: east\n    regoins: [us-east-1]\n"
    with pytest.raises(ValueError, match=r"^policy.yaml line 4: field tiers\[0\]\.regoins: Extra inputs"):
        load_policy(write(tmp_path, text))
    text = "version: v1\nweights:\n  warm: 1\n  cost: -3\n"
    with pytest.raises(ValueError, match=r"^policy.yaml line 4: field weights\.cost: Input should be greater"):
        load_policy(write(tmp_path, text))
    text = "version: v1\nprojects:\n  ml:\n    weight: heavy\n"
    with pytest.raises(ValueError, match=r"^policy.yaml line 4: field projects\.ml\.weight: "):
        load_policy(write(tmp_path, text))
    with pytest.raises(ValueError, match=r"^policy.yaml line 1: field version: Field required"):
        load_policy(write(tmp_path, "weights: {}\n"))
    text = "version: v1\ntiers:\n  - {name: a}\n  - {name: a}\n"
    with pytest.raises(ValueError, match=r"^policy.yaml line 2: field tiers: .*unique"):
        load_policy(write(tmp_path, text))


def test_load_policy_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^policy.yaml line 2: invalid YAML: mapping values"):
        load_policy(write(tmp_path, "version: v1\nkey: a: b\n"))
    with pytest.raises(ValueError, match=r"^policy.yaml line 1: the policy must be a mapping"):
        load_policy(write(tmp_path, "- a\n"))


# --- explain -----------------------------------------------------------------------------------------------------


def test_explain_lists_every_cluster() -> None:
    decision = place(Demand(cpu=2), [snap("small", cpu=1), snap("b", free_cpu=4), snap("a")])
    text = explain(decision)
    lines = text.splitlines()
    assert lines[0] == "placed on a [policy default]"
    assert lines[1].split() == ["CLUSTER", "SCORE", "VERDICT"]
    assert lines[2].split()[0::2] == ["a", "chosen"]
    assert lines[3].split()[0] == "b"
    assert lines[3].endswith("fits")
    assert lines[4].split(None, 1) == ["small", "too small: cpu 2 > 1"]
    never = explain(place(Demand(cpu=99), [snap("a")]))
    assert never.startswith("never fits: no cluster has cpu 99")
    waiting = explain(place(Demand(cpu=2), [snap("a", free_cpu=1)]))
    assert waiting.startswith("waiting: no cluster has room now (busy: 1) [policy default]")


def test_the_static_pass_is_reused_only_for_the_same_snapshot_list_and_placement_fields() -> None:
    """Filters and tiers are computed once per snapshot list and demand placement: a new list, or another demand's
    placement, is judged afresh."""
    policy = parse_policy("version: t\ntiers:\n  - name: home\n    regions: [us]\n  - name: rest\n")
    east = [snap("a", region="us"), snap("b", region="eu")]
    wanted_eu = Demand(cpu=1, regions=("eu",))
    assert place(wanted_eu, east, policy).cluster == "b"
    assert place(Demand(cpu=1), east, policy).cluster == "a", "another placement is judged afresh"
    moved = [snap("a", region="eu"), snap("b", region="us")]
    assert place(wanted_eu, moved, policy).cluster == "a", "a new list is judged afresh"
    assert place(wanted_eu, east, policy).cluster == "b", "the first list still answers as before"


def test_reasons_name_memory_in_human_units() -> None:
    gib = 2**30
    small = ClusterSnapshot(
        name="small", region="r", cloud="c", capacity={"cpu": 8, "memory": 8 * gib}, free={"cpu": 8, "memory": 8 * gib}
    )
    busy = ClusterSnapshot(
        name="busy", region="r", cloud="c", capacity={"cpu": 8, "memory": 32 * gib}, free={"cpu": 8, "memory": 3e8}
    )
    waiting = place(Demand(cpu=1, memory=16 * gib), [small, busy])
    assert waiting.verdicts == {"small": "too small: memory 16 GiB > 8 GiB", "busy": "busy: memory 16 GiB > 286 MiB"}
    never = place(Demand(cpu=1, memory=1000 * gib), [small, busy])
    assert never.never_fits
    assert never.reason == "no cluster has cpu 1, memory 1000 GiB"


def test_a_demand_waited_longer_differs_in_its_wait_alone() -> None:
    every_field = Demand(
        cpu=2.5, memory=3, gpu=1, gpu_type="a100", warm_key="w", clusters=("a",), regions=("r",), clouds=("c",),
        avoid=("b",), project="p", priority=4, labels=(("k", "v"),), avoid_labels=(("x", "y"),), queue="q",
        parent_cluster="a", waited_seconds=1.0, spread_key="s", input_bytes=(("r", 9),), pool_key="pool",
        pool_concurrency=8, pool_max_replicas=3,
    )  # fmt: skip
    later = every_field.waited(7.5)
    assert later.waited_seconds == 7.5
    assert later == dataclasses.replace(every_field, waited_seconds=7.5)
    assert every_field.waited_seconds == 1.0, "the demand it was made from is unchanged"
    # Every field is given above, none left at its default: a field added later must be given too.
    assert all(getattr(every_field, f.name) != f.default for f in dataclasses.fields(Demand))
