"""A first placement: pure and deterministic. Filters (healthy, not cordoned, placement affinity, resources fit)
then one score: a warm pool for the action's environment version first, then the most free CPU.

`place` never does I/O, so a decision can be recorded, explained and replayed; the placement issue replaces this
module's internals with the full engine (weighted scorers, tiers, fair share) behind the same call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Demand:
    """What one action needs."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    gpu_type: str | None = None
    warm_key: str | None = None
    """`env@version` of a reusable environment: a cluster with a free warm slot for it scores first."""
    clusters: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    clouds: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSnapshot:
    name: str
    region: str
    cloud: str
    capacity: Mapping[str, float]
    free: Mapping[str, float]
    warm: Mapping[str, int] = field(default_factory=dict)
    healthy: bool = True
    cordoned: bool = False


@dataclass(frozen=True)
class Decision:
    cluster: str | None
    never_fits: bool
    """No registered cluster could run it even when empty: fail now rather than wait forever."""
    reason: str
    verdicts: Mapping[str, str]
    """Each cluster's verdict: "chosen", "fits", or why it was filtered out."""


def _affinity(demand: Demand, c: ClusterSnapshot) -> str | None:
    if demand.clusters and c.name not in demand.clusters:
        return f"not one of the clusters {list(demand.clusters)}"
    if c.name in demand.avoid:
        return "avoided"
    if demand.regions and c.region not in demand.regions:
        return f"region {c.region} not in {list(demand.regions)}"
    if demand.clouds and c.cloud not in demand.clouds:
        return f"cloud {c.cloud} not in {list(demand.clouds)}"
    return None


def _short(demand: Demand, amounts: Mapping[str, float]) -> str | None:
    gpu_key = f"gpu:{demand.gpu_type}" if demand.gpu_type else "gpu"
    for resource, need in (("cpu", demand.cpu), ("memory", float(demand.memory)), (gpu_key, float(demand.gpu))):
        if need > 0 and amounts.get(resource, 0.0) < need:
            return f"{resource} {need:g} > {amounts.get(resource, 0.0):g}"
    return None


def place(demand: Demand, clusters: Sequence[ClusterSnapshot]) -> Decision:
    verdicts: dict[str, str] = {}
    candidates: list[ClusterSnapshot] = []
    could_ever = False
    for c in sorted(clusters, key=lambda c: c.name):
        reason = _affinity(demand, c)
        if reason is None and (never := _short(demand, c.capacity)) is not None:
            reason = f"too small: {never}"
        if reason is not None:
            verdicts[c.name] = reason
            continue
        could_ever = True
        if not c.healthy:
            verdicts[c.name] = "unhealthy"
        elif c.cordoned:
            verdicts[c.name] = "cordoned"
        elif (short := _short(demand, c.free)) is not None:
            verdicts[c.name] = f"busy: {short}"
        else:
            verdicts[c.name] = "fits"
            candidates.append(c)
    if not candidates:
        if not could_ever:
            return Decision(None, bool(clusters), "no registered cluster can ever run it", verdicts)
        return Decision(None, False, "no cluster has room now", verdicts)

    def score(c: ClusterSnapshot) -> tuple[int, float, str]:
        warm = 1 if demand.warm_key and c.warm.get(demand.warm_key, 0) > 0 else 0
        cpu_capacity = c.capacity.get("cpu", 0.0) or 1.0
        return (-warm, -c.free.get("cpu", 0.0) / cpu_capacity, c.name)

    chosen = min(candidates, key=score)
    verdicts[chosen.name] = "chosen"
    return Decision(chosen.name, False, f"placed on {chosen.name}", verdicts)
