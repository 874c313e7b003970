"""Waiting reasons that say a wait may never end (the action's own ancestors hold the room it needs), the error of
an action queued past its run's max wait, and `with_runcontext(max_wait=)`."""

from __future__ import annotations

from datetime import timedelta

import pytest

import flyte
from gateway._waits import ancestors_bound, queue_limit, waited_too_long
from policies import ClusterSnapshot, Demand, place

GIB = 2**30


def cluster(
    name: str, cpu: float, free_cpu: float, memory: float = 8 * GIB, free_memory: float | None = None, **kw: bool
) -> ClusterSnapshot:
    return ClusterSnapshot(
        name=name,
        region=name,
        cloud="aws",
        capacity={"cpu": cpu, "memory": memory},
        free={"cpu": free_cpu, "memory": memory if free_memory is None else free_memory},
        healthy=kw.get("healthy", True),
    )


def test_a_child_that_fits_only_where_its_driver_sits_may_never_start() -> None:
    """Issue 14: a 0.5-CPU driver on eu-west (2 CPU) waits for a 2-CPU child; us-east is too small."""
    clusters = [cluster("eu-west", 2, 1.5), cluster("us-east", 1, 1)]
    child = Demand(cpu=2)
    decision = place(child, clusters)
    assert (decision.cluster, decision.never_fits) == (None, False)
    reason = ancestors_bound(child, decision, clusters, {"eu-west": {"cpu": 0.5}})
    assert reason == "needs cpu 2 on eu-west, where its ancestors hold 0.5 of 2; it may never start"


def test_memory_is_named_in_human_units() -> None:
    clusters = [cluster("eu-west", 8, 8, memory=16 * GIB, free_memory=8 * GIB)]
    child = Demand(cpu=1, memory=12 * GIB)
    decision = place(child, clusters)
    reason = ancestors_bound(child, decision, clusters, {"eu-west": {"cpu": 1, "memory": 6 * GIB}})
    assert reason == "needs memory 12 GiB on eu-west, where its ancestors hold 6 GiB of 16 GiB; it may never start"


@pytest.mark.parametrize(
    ("clusters", "ancestors"),
    [
        # Another cluster could take it once its other work ends.
        ([cluster("eu-west", 2, 1.5), cluster("us-east", 4, 0)], {"eu-west": {"cpu": 0.5}}),
        # The ancestors hold nothing where it could go: an ordinary wait.
        ([cluster("eu-west", 2, 0)], {"us-east": {"cpu": 0.5}}),
        # Other work holds the room, not the ancestors: it starts when that ends.
        ([cluster("eu-west", 4, 1.5)], {"eu-west": {"cpu": 0.5}}),
        # A cluster that is down but big enough may come back.
        ([cluster("eu-west", 2, 1.5), cluster("ap-south", 4, 4, healthy=False)], {"eu-west": {"cpu": 0.5}}),
    ],
)
def test_an_ordinary_wait_keeps_its_reason(clusters: list[ClusterSnapshot], ancestors: dict) -> None:  # type: ignore[type-arg]
    child = Demand(cpu=2)
    decision = place(child, clusters)
    assert decision.cluster is None
    assert ancestors_bound(child, decision, clusters, ancestors) is None


def test_waiting_past_the_max_wait_names_the_reason() -> None:
    error = waited_too_long(12.4, 10, "the run's max wait", "no cluster has room now (busy: 1)")
    assert (error.code, error.kind, error.error_type) == ("MaxWaitExceeded", "user", "NonRecoverableError")
    assert error.message == (
        "queued 12s, longer than the run's max wait of 10s: it waited because no cluster has room now (busy: 1)"
    )
    assert isinstance(flyte.errors.from_info(error), flyte.errors.NonRecoverableError)


def test_max_wait_is_validated_and_carried_in_seconds() -> None:
    assert flyte.with_runcontext(max_wait=timedelta(minutes=10)).options.max_wait_seconds == 600
    assert flyte.with_runcontext(max_wait=90).options.max_wait_seconds == 90
    for bad in (0, -1, "10m", True):
        with pytest.raises(ValueError, match="with_runcontext: max_wait"):
            flyte.with_runcontext(max_wait=bad)  # type: ignore[arg-type]


def test_the_tighter_of_the_run_and_task_limits_applies() -> None:
    assert queue_limit(None, None) is None
    assert queue_limit(600, None) == (600, "the run's max wait")
    assert queue_limit(600, 30) == (30, "the task's max queued time")
    assert queue_limit(20, 30) == (20, "the run's max wait")
