"""The errors the gateway's domain raises (runs and actions, the registry, values, authorization), in the domain's
words, never as HTTP: `gateway._errors` maps each kind to its HTTP answer, the only place that does.

::

    DomainError              `message` for people; `code` names the case for programs (`run_exists`, `busy`)
    ├── Invalid              the request cannot be right whatever is stored (unknown inputs, a malformed event)
    ├── TooLarge             a value is over its limit
    ├── NotFound             what it names does not exist, or the caller may not know that it does
    ├── Forbidden            the caller may not do this (a token's scope, an agent speaking for another cluster)
    ├── Unavailable          a service the domain needs (the blob store) is down: trying again later may work
    └── Conflict             it clashes with what is stored (a name taken, a run that has ended)
        ├── Busy             it lost a race with other writers too often: trying again may work
        ├── StaleEpoch       an event from an older session of a cluster than the one that holds the action
        ├── StaleAttempt     an event about another attempt than the action's current one
        ├── IllegalTransition  the action's state machine does not allow the move
        └── Fenced           a leader-only write from a term that has ended (another replica leads)

Only `Busy` and `Unavailable` say anything about time: every other kind is the same however often it is tried.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A request the domain refuses; `code` defaults to its kind's."""

    default_code: ClassVar[str] = "domain_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class Unavailable(DomainError):
    default_code = "unavailable"


class Invalid(DomainError):
    default_code = "bad_request"


class TooLarge(DomainError):
    default_code = "too_large"


class NotFound(DomainError):
    default_code = "not_found"


class Forbidden(DomainError):
    default_code = "forbidden"


class Conflict(DomainError):
    default_code = "conflict"


class Busy(Conflict):
    default_code = "busy"


class StaleEpoch(Conflict):
    default_code = "stale_epoch"


class StaleAttempt(Conflict):
    default_code = "stale_attempt"


class IllegalTransition(Conflict):
    default_code = "illegal_transition"


class Fenced(Conflict):
    """A leader-only write carried a term that has ended: another replica leads now."""

    default_code = "fenced"
