"""Data-aware placement (issue 19): `weights.data_locality` scores clusters by the input bytes that would cross
regions (the demand carries the input blobs' sizes by the region whose store holds them); `flyte policy simulate`
counts those bytes before and after."""

from __future__ import annotations

from policies import (
    ClusterSnapshot,
    Demand,
    Policy,
    Recorded,
    bytes_crossing,
    demand_from_dict,
    demand_to_dict,
    place,
    simulate,
    snapshot_to_dict,
)

MiB = 1024 * 1024
DATA = Policy(version="data", weights={"warm": 0, "least_loaded": 0, "data_locality": 1})  # type: ignore[arg-type]


def cluster(name: str, region: str, free_cpu: float = 4.0) -> ClusterSnapshot:
    return ClusterSnapshot(name, region, "local", {"cpu": 4.0, "memory": 8e9}, {"cpu": free_cpu, "memory": 8e9})


CLUSTERS = [cluster("east-1", "us-east"), cluster("east-2", "us-east"), cluster("west", "eu-west", free_cpu=1.0)]


def test_bytes_crossing_counts_what_is_held_in_other_regions_and_in_no_region() -> None:
    demand = Demand(input_bytes=(("eu-west", 50 * MiB), ("us-east", 2 * MiB), ("", 1 * MiB)))
    assert bytes_crossing(demand, "eu-west") == 3 * MiB
    assert bytes_crossing(demand, "us-east") == 51 * MiB
    assert bytes_crossing(Demand(), "us-east") == 0


def test_the_cluster_where_the_inputs_are_wins_and_scores_scale_with_the_bytes() -> None:
    demand = Demand(cpu=1, input_bytes=(("eu-west", 40 * MiB), ("us-east", 10 * MiB)))
    decision = place(demand, CLUSTERS, DATA)
    assert decision.cluster == "west"
    assert decision.scores == {"west": 1.0, "east-1": 0.0, "east-2": 0.0}


def test_data_locality_is_weighed_against_the_other_scorers() -> None:
    demand = Demand(cpu=1, input_bytes=(("eu-west", 40 * MiB),))
    # With the default weights (warm, least loaded) and none for data, the emptiest cluster wins...
    assert place(demand, CLUSTERS).cluster == "east-1"
    # ...and a heavy enough data weight outweighs a busier cluster.
    both = Policy(version="both", weights={"least_loaded": 1, "data_locality": 2})  # type: ignore[arg-type]
    assert place(demand, CLUSTERS, both).cluster == "west"


def test_no_inputs_or_all_in_one_store_of_no_region_changes_nothing() -> None:
    for demand in (Demand(cpu=1), Demand(cpu=1, input_bytes=(("", 9 * MiB),))):
        decision = place(demand, CLUSTERS, DATA)
        assert decision.cluster == "east-1"  # all equal: ties by name
        assert set(decision.scores.values()) <= {0.0, 1.0}


def test_the_input_bytes_survive_the_decision_record() -> None:
    demand = Demand(cpu=1, input_bytes=(("eu-west", 5),))
    assert demand_from_dict(demand_to_dict(demand)) == demand


def test_simulate_counts_the_bytes_that_crossed_before_and_would_after() -> None:
    demand = demand_to_dict(Demand(cpu=1, input_bytes=(("eu-west", 30 * MiB),)))
    snapshots = [snapshot_to_dict(c) for c in CLUSTERS]
    records = [Recorded(demand, snapshots, "east-1"), Recorded(demand, snapshots, "west")]
    sim = simulate(records, DATA)
    assert (sim.before.bytes_crossing, sim.after.bytes_crossing) == (30 * MiB, 0)
    assert sim.changed == 1
    assert sim.moves == {("east-1", "west"): 1}
