"""Recorded decisions replayed under another policy: the record round-trips exactly, an unchanged policy changes
nothing, and a new policy's moves, waits, cost and spread are counted as they would happen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from policies import (
    ClusterSnapshot,
    Demand,
    Recorded,
    demand_from_dict,
    demand_to_dict,
    parse_policy,
    place,
    simulate,
    snapshot_from_dict,
    snapshot_to_dict,
)


def _cluster(name: str, region: str, cpu: float = 8.0, cost: float = 1.0) -> ClusterSnapshot:
    return ClusterSnapshot(
        name=name,
        region=region,
        cloud="aws",
        capacity={"cpu": 8.0, "memory": 32e9},
        free={"cpu": cpu, "memory": 32e9},
        cost_per_cpu_hour=cost,
        labels={"tier": region},
    )


CLUSTERS = [_cluster("east", "us-east", cpu=6.0, cost=3.0), _cluster("west", "eu-west", cpu=2.0, cost=1.0)]


def _recorded(demand: Demand, clusters: list[ClusterSnapshot], policy_text: str) -> Recorded:
    decision = place(demand, clusters, parse_policy(policy_text))
    return Recorded(
        demand_to_dict(demand), [snapshot_to_dict(c) for c in clusters], decision.cluster, decision.never_fits
    )


def test_demands_and_snapshots_round_trip_through_plain_mappings() -> None:
    demand = Demand(
        cpu=1.5,
        memory=2**30,
        gpu=1,
        gpu_type="A100",
        clusters=("east",),
        labels=(("zone", "a"),),
        avoid_labels=(("spot", "true"),),
        queue="batch",
        spread_key="r/a0",
        waited_seconds=4.0,
    )
    assert demand_from_dict(demand_to_dict(demand)) == demand
    assert set(demand_to_dict(demand)) == {f.name for f in dataclasses.fields(Demand)}, "a field is not recorded"
    snapshot = ClusterSnapshot("c", "r", "aws", {"cpu": 4.0}, {"cpu": 1.0}, warm={"e@v": 2}, pools=("batch",))
    assert snapshot_from_dict(snapshot_to_dict(snapshot)) == snapshot
    assert set(snapshot_to_dict(snapshot)) == {f.name for f in dataclasses.fields(ClusterSnapshot)}


def test_replaying_under_the_same_policy_changes_nothing() -> None:
    policy = "version: same\n"
    records = [_recorded(Demand(cpu=c), CLUSTERS, policy) for c in (0.5, 1.0, 2.0, 7.0)]
    sim = simulate(records, parse_policy(policy))
    assert (sim.replayed, sim.changed) == (4, 0)
    assert sim.before.placed == sim.after.placed
    assert sim.before.waiting == sim.after.waiting == 1  # cpu 7 fits east's capacity but not its free room


def test_a_cost_first_policy_moves_work_to_the_cheaper_region() -> None:
    records = [_recorded(Demand(cpu=1.0), CLUSTERS, "version: load\n") for _ in range(3)]
    assert all(r.cluster == "east" for r in records)
    sim = simulate(records, parse_policy("version: cheap\nweights:\n  warm: 0\n  least_loaded: 0\n  cost: 1\n"))
    assert sim.changed == 3
    assert sim.moves == {("east", "west"): 3}
    assert sim.before.cost_per_hour == pytest.approx(9.0)
    assert sim.after.cost_per_hour == pytest.approx(3.0)
    assert dict(sim.after.regions) == {"eu-west": 3}
    assert sim.after.spread() == 1.0


def test_a_closed_tier_turns_placements_into_waits_and_unmatched_clusters_into_never_fits() -> None:
    records = [_recorded(Demand(cpu=1.0, waited_seconds=5.0), CLUSTERS, "version: any\n")]
    later = "version: later\ntiers:\n  - name: europe\n    regions: [eu-west]\n    after_seconds: 60\n"
    sim = simulate(records, parse_policy(later))
    assert sim.moves == {("east", "(waits)"): 1}
    assert (sim.after.waiting, sim.after.cost_per_hour) == (1, 0.0)
    nowhere = "version: nowhere\ntiers:\n  - name: asia\n    regions: [ap-south]\n"
    assert simulate(records, parse_policy(nowhere)).moves == {("east", "(never fits)"): 1}


def test_records_without_snapshots_are_skipped_not_guessed() -> None:
    record: dict[str, Any] = {"demand": demand_to_dict(Demand(cpu=1.0)), "snapshots": [], "cluster": "east"}
    sim = simulate([Recorded(**record)], parse_policy("version: x\n"))
    assert (sim.replayed, sim.skipped, sim.changed) == (0, 1, 0)
