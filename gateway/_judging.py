"""What a placement pass reads of an action, and what it does when it cannot: the demand an action's spec and
overrides make, the action records it can decode, and which failures are the action's own (it fails alone, as
`NonRecoverableError`) rather than the platform's (the pass fails and is tried again).
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from flyte._wire import ActionSummary
from gateway._errors import ApiError, describe_validation_error
from gateway.store import StoreError
from policies import Demand

log = logging.getLogger("flyte.gateway.dispatch")

UNJUDGEABLE = (ValueError, TypeError, KeyError, ArithmeticError, ApiError)
"""What a placement pass may fail to judge about one action (bad data, a missing task); see `cannot_judge`."""


def readable_action(key: str, value: bytes, revision: int) -> ActionSummary | None:
    """The action a record holds, or None (logged) for one today's models refuse, e.g. an override written before
    overrides were validated: one such record must not stop the watch that places everyone's work."""
    try:
        return ActionSummary.model_validate_json(value).model_copy(update={"revision": revision})
    except pydantic.ValidationError as error:
        log.warning("ignoring the unreadable action record %s: %s", key, describe_validation_error(error))
        return None


def cannot_judge(error: Exception) -> bool:
    """Whether `error` is about the action itself (it fails alone) rather than the platform: a store outage or a
    busy store fails the pass, which is tried again."""
    if isinstance(error, StoreError):
        return False
    return not isinstance(error, ApiError) or (error.status < 500 and error.status != 409)


def demand_of(
    resources: dict[str, Any],
    placement: dict[str, Any] | None,
    *,
    warm_key: str | None,
    queue: str | None,
    project: str,
    parent_cluster: str | None,
    waited_seconds: float,
    spread_key: str | None,
) -> Demand:
    """What an action asks for, from its task spec (`Resources.to_dict()` and `Placement.to_dict()`)."""
    cpu = resources.get("cpu") or {}
    memory = resources.get("memory") or {}
    gpu = resources.get("gpu") or {}
    placement = placement or {}

    def names(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in placement.get(key) or ())

    return Demand(
        cpu=float(cpu.get("request") or 0.0),
        memory=int(memory.get("request") or 0),
        gpu=int(gpu.get("count") or 0),
        gpu_type=gpu.get("type"),
        warm_key=warm_key,
        clusters=names("clusters"),
        regions=names("regions"),
        clouds=names("clouds"),
        avoid=names("avoid"),
        project=project,
        labels=tuple(sorted((str(k), str(v)) for k, v in (placement.get("labels") or {}).items())),
        queue=queue,
        parent_cluster=parent_cluster,
        waited_seconds=waited_seconds,
        spread_key=spread_key,
    )
