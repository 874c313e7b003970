"""Conditions a task waits on (`flyte.new_condition`), their signals, and the suspension of a waiting attempt."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from ._base import ActionName, Text, WireModel
from ._worker import WireTrace

ConditionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
ConditionDataType = Literal["bool", "int", "float", "str"]
ConditionValue = Annotated[bool, Field(strict=True)] | Annotated[int, Field(strict=True)] | float | Text
"""Strict: a JSON `true` is never the int 1, nor `1` the bool `true`, so the gateway can check the declared type."""


class ConditionHook(WireModel):
    """`flyte.ConditionWebhook`: posted to once by the gateway when the condition is created. In every string of
    `payload`, `{callback_uri}` becomes the condition's signal URL (a default payload names the condition)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    payload: dict[str, Any] | None = None


class ConditionHookDelivery(WireModel):
    """A condition's webhook still to send, kept apart from the condition's record (its URL may be a secret)."""

    url: str
    body: dict[str, Any]
    attempts: int = 0


class ConditionCreate(WireModel):
    """`PUT /api/v1/runs/{run}/actions/{action}/conditions/{name}`: a task's `flyte.new_condition`. The first
    creation wins; a re-attempt of the action creating it again is answered with the record as it stands."""

    prompt: Text = "Approve?"
    prompt_type: Literal["text", "markdown"] = "text"
    description: Text = ""
    data_type: ConditionDataType = "bool"
    timeout_seconds: float | None = Field(default=None, gt=0)
    webhook: ConditionHook | None = None


class ConditionSignal(WireModel):
    """`POST /api/v1/runs/{run}/conditions/{name}/signal`: the value a waiting condition returns."""

    value: ConditionValue
    action: ActionName | None = None
    """The action that created the condition, when several actions of the run created one of that name."""


class ConditionRecord(WireModel):
    """A condition as the gateway stores it: created waiting, then signalled or timed out, never changed after."""

    run: str
    action: ActionName
    name: ConditionName
    prompt: Text = "Approve?"
    prompt_type: Literal["text", "markdown"] = "text"
    description: Text = ""
    data_type: ConditionDataType = "bool"
    state: Literal["waiting", "signalled", "timed_out"] = "waiting"
    created_at: float
    deadline: float | None = None
    """When a waiting condition times out (seconds since the epoch), from the first creation's timeout."""
    value: ConditionValue | None = None
    ended_at: float | None = None
    signalled_by: Text | None = None


class SuspendRequest(WireModel):
    """`POST /api/v1/runs/{run}/actions/{action}/suspend`, from the attempt's worker: end this attempt without a
    result and queue the action again when `condition` is signalled (or times out) or at `until` (a durable sleep).
    The next attempt replays up to the wait, which then returns at once."""

    attempt: int = Field(ge=1)
    condition: ConditionName | None = None
    until: float | None = Field(default=None, ge=0, validate_default=True)
    traces: dict[str, WireTrace] = Field(default_factory=dict)
    """The attempt's trace checkpoints, made durable before it ends (as a result's are)."""

    @field_validator("until")
    @classmethod
    def _one_reason(cls, until: float | None, info: Any) -> float | None:
        if (until is None) == (info.data.get("condition") is None):
            raise ValueError("give either condition or until")
        return until


class SuspendAnswer(WireModel):
    suspended: bool
    """False when the condition ended meanwhile: the attempt goes on with `condition`'s value."""
    condition: ConditionRecord | None = None
