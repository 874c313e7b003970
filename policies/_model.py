"""The placement value objects: what an action needs (`Demand`), what a cluster has (`ClusterSnapshot`), and the
outcome (`Decision`). Frozen, and every field added after the first slice has a default."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields


def pool_replicas(in_flight: int, concurrency: int, max_replicas: int) -> int:
    """The replicas of a reusable pool that `in_flight` of its actions occupy: as few as hold them at `concurrency`
    each, and never more than `max_replicas` (past that they wait for a slot). The gateway reserves room for these
    and the agent counts them in the free room it reports, so both sides account for a pool the same way."""
    if in_flight <= 0:
        return 0
    return min(max_replicas, -(-in_flight // max(concurrency, 1)))


@dataclass(frozen=True, slots=True)
class Demand:
    """What one action needs."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    gpu_type: str | None = None
    warm_key: str | None = None
    """The reusable environment's pool (`project/domain/env@version`): a cluster with a free warm slot in it scores
    higher."""
    clusters: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    clouds: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    project: str = "default"
    priority: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    """Labels a cluster must carry (affinity, data residency)."""
    avoid_labels: tuple[tuple[str, str], ...] = ()
    """Labels a cluster must not carry (anti-affinity)."""
    queue: str | None = None
    """The queue whose cluster pool the action must run in."""
    parent_cluster: str | None = None
    """Where the parent action runs: the locality scorer prefers it."""
    waited_seconds: float = 0.0
    """How long the action has been queued: opens the policy's fallback tiers."""
    spread_key: str | None = None
    """Actions sharing this key are spread: clusters with fewer of them placed (`placed_counts`) score higher."""
    input_bytes: tuple[tuple[str, int], ...] = ()
    """(region, bytes) of the action's input blobs by the region whose store holds them ("" for a store of no
    region, the gateway's): the data-locality scorer prefers clusters where fewer bytes would cross regions."""
    pool_key: str | None = None
    """The reusable environment's pool the action runs in. Its cpu, memory and gpu are then one replica's: a
    replica holds them once for `pool_concurrency` actions, so an action that joins a replica with a free slot
    needs no room, and one that opens a replica needs the replica's; a cluster holds at most
    `pool_max_replicas * pool_concurrency` of the pool's actions (`ClusterSnapshot.pool_in_flight`)."""
    pool_concurrency: int = 1
    pool_max_replicas: int = 1

    def pool_replicas(self, in_flight: int) -> int:
        """The replicas `in_flight` of this demand's pool actions occupy on one cluster."""
        return pool_replicas(in_flight, self.pool_concurrency, self.pool_max_replicas)

    def waited(self, seconds: float) -> Demand:
        """This demand, queued `seconds`. Made from its fields in one step: `dataclasses.replace` takes twice as
        long, and the gateway's queue makes a few of these for each child of a fan-out."""
        values = list(_DEMAND_FIELDS(self))
        values[_WAITED] = seconds
        return Demand(*values)


_DEMAND_FIELDS = operator.attrgetter(*(f.name for f in fields(Demand)))
_WAITED = [f.name for f in fields(Demand)].index("waited_seconds")


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """One cluster as its agent last reported it."""

    name: str
    region: str
    cloud: str
    capacity: Mapping[str, float]
    free: Mapping[str, float]
    warm: Mapping[str, int] = field(default_factory=dict)
    healthy: bool = True
    cordoned: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    cost_per_cpu_hour: float = 0.0
    cost_per_gpu_hour: float = 0.0
    queue_depth: int = 0
    pools: tuple[str, ...] = ()
    """Queue pools this cluster belongs to (besides those the policy names)."""
    placed_counts: Mapping[str, int] = field(default_factory=dict)
    """Actions placed here per spread key."""
    pool_in_flight: Mapping[str, int] = field(default_factory=dict)
    """Actions placed or running here per reusable pool (`Demand.pool_key`)."""


@dataclass(frozen=True, slots=True)
class Decision:
    cluster: str | None
    never_fits: bool
    """No registered cluster could run it even when empty: fail now rather than wait forever."""
    reason: str
    verdicts: Mapping[str, str]
    """Each cluster's verdict: "chosen", "fits", or why it was filtered out."""
    scores: Mapping[str, float] = field(default_factory=dict)
    """The weighted, normalised score (0..1) of each cluster that was ranked."""
    policy_version: str = ""
    tier: str | None = None
    """The fallback tier the ranked clusters came from, when the policy has tiers."""
