"""What a placement pass does with an action it cannot read or judge: the action records it can decode, and which
failures are the action's own (it fails alone, as `NonRecoverableError`) rather than the platform's (the pass fails
and is tried again). The demand an action makes is `gateway._pending.demand_of`.
"""

from __future__ import annotations

import logging

import pydantic

from flyte._wire import ActionSummary
from gateway._decoded import DecodedActions
from gateway._domain_errors import Conflict, DomainError
from gateway._errors import describe_validation_error
from gateway.store import StoreError

log = logging.getLogger("flyte.gateway.dispatch")

UNJUDGEABLE = (ValueError, TypeError, KeyError, ArithmeticError, DomainError)
"""What a placement pass may fail to judge about one action (bad data, a missing task); see `cannot_judge`."""


def readable_action(
    key: str, value: bytes, revision: int, decoded: DecodedActions | None = None
) -> ActionSummary | None:
    """The action a record holds, or None (logged) for one today's models refuse, e.g. an override written before
    overrides were validated: one such record must not stop the watch that places everyone's work."""
    try:
        if decoded is not None:
            return decoded.decode(key, value, revision)
        return ActionSummary.model_validate_json(value).model_copy(update={"revision": revision})
    except pydantic.ValidationError as error:
        log.warning("ignoring the unreadable action record %s: %s", key, describe_validation_error(error))
        return None


def cannot_judge(error: Exception) -> bool:
    """Whether `error` is about the action itself (it fails alone) rather than the platform: a store outage or a
    busy store fails the pass, which is tried again."""
    if isinstance(error, StoreError):
        return False
    return not isinstance(error, Conflict)
