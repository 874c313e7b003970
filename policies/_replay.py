"""Decisions as plain mappings (for storing with each placement) and back, so a recorded decision can be replayed
under another policy (`place` on what the original decision saw)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._model import ClusterSnapshot, Demand

_DEMAND_FIELDS = {f.name for f in dataclasses.fields(Demand)}
_SNAPSHOT_FIELDS = {f.name for f in dataclasses.fields(ClusterSnapshot)}


def demand_to_dict(demand: Demand) -> dict[str, Any]:
    d = demand
    return {
        "cpu": d.cpu,
        "memory": d.memory,
        "gpu": d.gpu,
        "gpu_type": d.gpu_type,
        "warm_key": d.warm_key,
        "clusters": list(d.clusters),
        "regions": list(d.regions),
        "clouds": list(d.clouds),
        "avoid": list(d.avoid),
        "project": d.project,
        "priority": d.priority,
        "labels": [list(kv) for kv in d.labels],
        "avoid_labels": [list(kv) for kv in d.avoid_labels],
        "queue": d.queue,
        "parent_cluster": d.parent_cluster,
        "waited_seconds": d.waited_seconds,
        "spread_key": d.spread_key,
        "input_bytes": [list(kv) for kv in d.input_bytes],
        "pool_key": d.pool_key,
        "pool_concurrency": d.pool_concurrency,
        "pool_max_replicas": d.pool_max_replicas,
    }


def snapshot_to_dict(snapshot: ClusterSnapshot) -> dict[str, Any]:
    # Written out rather than walked by `dataclasses.fields`: the dispatcher records one per decision.
    c = snapshot
    return {
        "name": c.name,
        "region": c.region,
        "cloud": c.cloud,
        "capacity": dict(c.capacity),
        "free": dict(c.free),
        "warm": dict(c.warm),
        "healthy": c.healthy,
        "cordoned": c.cordoned,
        "labels": dict(c.labels),
        "cost_per_cpu_hour": c.cost_per_cpu_hour,
        "cost_per_gpu_hour": c.cost_per_gpu_hour,
        "queue_depth": c.queue_depth,
        "pools": list(c.pools),
        "placed_counts": dict(c.placed_counts),
        "pool_in_flight": dict(c.pool_in_flight),
    }


def demand_from_dict(data: Mapping[str, Any]) -> Demand:
    """The Demand a mapping describes; unknown keys (from a newer gateway) are ignored."""
    values = {k: v for k, v in data.items() if k in _DEMAND_FIELDS}
    for key in ("clusters", "regions", "clouds", "avoid"):
        if key in values:
            values[key] = tuple(values[key])
    for key in ("labels", "avoid_labels"):
        if key in values:
            values[key] = tuple((str(k), str(v)) for k, v in values[key])
    if "input_bytes" in values:
        values["input_bytes"] = tuple((str(k), int(v)) for k, v in values["input_bytes"])
    return Demand(**values)


def snapshot_from_dict(data: Mapping[str, Any]) -> ClusterSnapshot:
    values = {k: v for k, v in data.items() if k in _SNAPSHOT_FIELDS}
    if "pools" in values:
        values["pools"] = tuple(values["pools"])
    return ClusterSnapshot(**values)
