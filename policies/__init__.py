"""Placement: `place(demand, clusters, policy) -> Decision`, pure and deterministic (see ARCHITECTURE.md, Placement).

Also the policy file (`load_policy`, `Policy`), fair-share ordering of queued actions and `explain`.
"""

from ._explain import explain
from ._fair import fair_share_order
from ._model import ClusterSnapshot, Decision, Demand
from ._place import place
from ._policy import DEFAULT_POLICY, Policy, Project, Quota, Tier, Weights, load_policy

__all__ = [
    "DEFAULT_POLICY",
    "ClusterSnapshot",
    "Decision",
    "Demand",
    "Policy",
    "Project",
    "Quota",
    "Tier",
    "Weights",
    "explain",
    "fair_share_order",
    "load_policy",
    "place",
]
