"""The placement value objects: what an action needs (`Demand`), what a cluster has (`ClusterSnapshot`), and the
outcome (`Decision`). Frozen, and every field added after the first slice has a default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Demand:
    """What one action needs."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    gpu_type: str | None = None
    warm_key: str | None = None
    """`env@version` of a reusable environment: a cluster with a free warm slot for it scores higher."""
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
