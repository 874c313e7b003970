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
    return {f: _plain(getattr(demand, f)) for f in _DEMAND_FIELDS}


def snapshot_to_dict(snapshot: ClusterSnapshot) -> dict[str, Any]:
    return {f: _plain(getattr(snapshot, f)) for f in _SNAPSHOT_FIELDS}


def demand_from_dict(data: Mapping[str, Any]) -> Demand:
    """The Demand a mapping describes; unknown keys (from a newer gateway) are ignored."""
    values = {k: v for k, v in data.items() if k in _DEMAND_FIELDS}
    for key in ("clusters", "regions", "clouds", "avoid"):
        if key in values:
            values[key] = tuple(values[key])
    for key in ("labels", "avoid_labels"):
        if key in values:
            values[key] = tuple((str(k), str(v)) for k, v in values[key])
    return Demand(**values)


def snapshot_from_dict(data: Mapping[str, Any]) -> ClusterSnapshot:
    values = {k: v for k, v in data.items() if k in _SNAPSHOT_FIELDS}
    if "pools" in values:
        values["pools"] = tuple(values["pools"])
    return ClusterSnapshot(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
