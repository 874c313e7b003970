"""Placement: `place(demand, clusters) -> Decision`, pure and deterministic (see ARCHITECTURE.md, Placement)."""

from ._place import ClusterSnapshot, Decision, Demand, place

__all__ = ["ClusterSnapshot", "Decision", "Demand", "place"]
