"""A queued action on its way through a placement pass: what placing it needs (`Pending`, with its `Demand` from
the task spec, its overrides and where its parent runs), and the store write that records each decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pydantic_core import to_json

from flyte._wire import (
    DEFAULT_REQUEST,
    ActionSummary,
    ClusterRecord,
    PlacementSpec,
    ResourcesSpec,
    ReusableSpec,
    TaskVersion,
)
from gateway._keys import placement_key
from gateway.store import Put
from policies import Decision, Demand, demand_to_dict


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued action ready to be placed, with what its assignment will carry."""

    action: ActionSummary
    demand: Demand
    task: TaskVersion
    project: str
    domain: str
    resources: ResourcesSpec
    reusable: ReusableSpec | None
    timeout: float | None
    max_wait: tuple[float, str] | None
    """How long it may stay queued, and whose limit that is (`queue_limit`)."""

    def with_action(self, action: ActionSummary, demand: Demand | None = None) -> Pending:
        """This, for `action` as it is now (and `demand`, if given). Made field by field: `dataclasses.replace` is
        several times slower, and runs for each queued action a pass looks at."""
        return Pending(
            action,
            self.demand if demand is None else demand,
            self.task,
            self.project,
            self.domain,
            self.resources,
            self.reusable,
            self.timeout,
            self.max_wait,
        )


def record_put(item: Pending, snapshots: list[bytes], decision: Decision, now: float, term: int | None = None) -> Put:
    """The store write of a decision: a `PlacementRecord`, serialised directly, with the snapshots already in JSON
    (this runs once per decision, and most snapshots are the same from one decision to the next)."""
    action = item.action
    attempt = action.attempts + 1
    record = {
        "run": action.run,
        "action": action.name,
        "attempt": attempt,
        "decided_at": now,
        "policy_version": decision.policy_version,
        "cluster": decision.cluster,
        "never_fits": decision.never_fits,
        "reason": decision.reason,
        "tier": decision.tier,
        "verdicts": decision.verdicts,
        "scores": decision.scores,
        "demand": demand_to_dict(item.demand),
        "term": term,
    }
    # pydantic-core's encoder: ~5x the standard library's on these records, written for every decision.
    body = to_json(record)[:-1] + b',"snapshots":[' + b",".join(snapshots) + b"]}"
    return Put(placement_key(action.run, action.name, attempt), body)


_NO_PLACEMENT = PlacementSpec()
"""What an action without placement settings asks: made once (one made per action was most of `demand_of`'s time)."""


def demand_of(
    resources: ResourcesSpec,
    placement: PlacementSpec | None,
    *,
    warm_key: str | None,
    queue: str | None,
    project: str,
    parent_cluster: str | None,
    waited_seconds: float,
    spread_key: str | None,
    input_bytes: tuple[tuple[str, int], ...] = (),
    pool: tuple[str, ReusableSpec] | None = None,
) -> Demand:
    """What an action asks for, from its task spec's (or its overrides') resources and placement; `pool` is the
    key and policy of the reusable environment's pool it runs in."""
    placement = placement or _NO_PLACEMENT
    return Demand(
        cpu=resources.cpu.request if resources.cpu else 0.0,
        memory=resources.memory.request if resources.memory else 0,
        gpu=resources.gpu.count if resources.gpu else 0,
        gpu_type=resources.gpu.type if resources.gpu else None,
        warm_key=warm_key,
        clusters=tuple(placement.clusters),
        regions=tuple(placement.regions),
        clouds=tuple(placement.clouds),
        avoid=tuple(placement.avoid),
        project=project,
        labels=tuple(sorted(placement.labels.items())),
        queue=queue,
        parent_cluster=parent_cluster,
        waited_seconds=waited_seconds,
        spread_key=spread_key,
        input_bytes=input_bytes,
        pool_key=pool[0] if pool is not None else None,
        pool_concurrency=pool[1].concurrency if pool is not None else 1,
        pool_max_replicas=pool[1].max_replicas if pool is not None else 1,
    )


def default_request(clusters: Iterable[ClusterRecord]) -> Mapping[str, float]:
    """The default request placement applies: the largest each registered cluster advertises, so that a cluster
    chosen for an action that declares nothing is never over-committed by its own agent's account."""
    merged: dict[str, float] = dict(DEFAULT_REQUEST)
    for index, record in enumerate(clusters):
        for resource, amount in record.default_request.items():
            merged[resource] = amount if index == 0 else max(merged[resource], amount)
    return merged


def with_default_request(demand: Demand, default: Mapping[str, float]) -> Demand:
    """`demand` with the default request for each of cpu and memory it does not declare (a reusable environment's
    actions run in its pool's processes and need none)."""
    if demand.cpu > 0 and demand.memory > 0:
        return demand
    return replace(
        demand,
        cpu=demand.cpu if demand.cpu > 0 else default["cpu"],
        memory=demand.memory if demand.memory > 0 else int(default["memory"]),
    )
