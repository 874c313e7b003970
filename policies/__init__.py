"""Placement: `place(demand, clusters, policy) -> Decision`, pure and deterministic (see ARCHITECTURE.md, Placement).

Also the policy file (`load_policy`, `parse_policy`, `Policy`), fair-share ordering of queued actions, `explain`,
and `simulate` (replaying recorded decisions under another policy).
"""

from ._explain import explain
from ._fair import fair_share_order
from ._model import ClusterSnapshot, Decision, Demand, pool_replicas
from ._place import bytes_crossing, place
from ._policy import DEFAULT_POLICY, Policy, Project, Quota, Tier, Weights, load_policy, parse_policy
from ._replay import demand_from_dict, demand_to_dict, snapshot_from_dict, snapshot_to_dict
from ._simulate import Outcome, Recorded, Simulation, simulate
from ._units import amount_text

__all__ = [
    "DEFAULT_POLICY",
    "ClusterSnapshot",
    "Decision",
    "Demand",
    "Outcome",
    "Policy",
    "Project",
    "Quota",
    "Recorded",
    "Simulation",
    "Tier",
    "Weights",
    "amount_text",
    "bytes_crossing",
    "demand_from_dict",
    "demand_to_dict",
    "explain",
    "fair_share_order",
    "load_policy",
    "parse_policy",
    "place",
    "pool_replicas",
    "simulate",
    "snapshot_from_dict",
    "snapshot_to_dict",
]
