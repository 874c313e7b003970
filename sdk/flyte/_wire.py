"""Pydantic models of the messages that cross process boundaries, shared by the SDK, the gateway and agents.

This first slice holds what local mode writes into a run's metadata directory (the same records the gateway will
serve): values, errors, actions and runs. Every model is validated once at the edge that receives it.
"""

from __future__ import annotations

import base64
import traceback
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import errors
from ._codec import EncodedValue


class Phase(StrEnum):
    """The action state machine: queued -> placed -> running -> succeeded | failed | aborted."""

    QUEUED = "queued"
    PLACED = "placed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireValue(WireModel):
    """One encoded value: JSON text or base64 pickle bytes inline, or a blob reference."""

    kind: Literal["json", "pickle"]
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    json_text: str | None = None
    pickle_b64: str | None = None
    ref: str | None = None

    @classmethod
    def from_encoded(cls, value: EncodedValue) -> WireValue:
        return cls.model_validate(wire_value_fields(value))

    def to_encoded(self) -> EncodedValue:
        if self.ref is not None:
            return EncodedValue(self.kind, self.digest, ref=self.ref)
        if self.json_text is not None:
            return EncodedValue("json", self.digest, payload=self.json_text.encode())
        return EncodedValue("pickle", self.digest, payload=base64.b64decode(self.pickle_b64 or ""))


def wire_value_fields(value: EncodedValue) -> dict[str, str]:
    """The JSON fields of a `WireValue`, without building the model (hot path: one per finished action)."""
    if value.payload is None:
        return {"kind": value.kind, "digest": value.digest, "ref": value.ref or ""}
    if value.kind == "json":
        return {"kind": "json", "digest": value.digest, "json_text": value.payload.decode()}
    return {"kind": "pickle", "digest": value.digest, "pickle_b64": base64.b64encode(value.payload).decode()}


class ErrorInfo(WireModel):
    """A failure as it crosses a boundary; `flyte.errors.from_parts` turns it back into an exception."""

    error_type: str
    """The flyte.errors class, e.g. RuntimeUserError or OOMError."""
    code: str
    """The failing exception's type name, or a platform condition."""
    kind: Literal["user", "system"]
    message: str
    exception_type: str | None = None
    """module.QualName of the original exception, so the parent can re-raise something `except` matches."""
    traceback: str | None = None
    worker: str | None = None

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        """The record of an exception raised by a task's code (a user error) or a flyte error."""
        if isinstance(error, errors.BaseRuntimeError):
            error_type, exception_type = errors.describe(error)
            return cls(
                error_type=error_type,
                code=error.code,
                kind=error.kind,
                message=error.message,
                exception_type=exception_type,
                traceback=error.traceback,
                worker=error.worker,
            )
        return cls(
            error_type="RuntimeUserError",
            code=type(error).__name__,
            kind="user",
            message=str(error),
            exception_type=f"{type(error).__module__}.{type(error).__qualname__}",
            traceback="".join(traceback.format_exception(error)),
        )

    def to_exception(self) -> errors.BaseRuntimeError:
        return errors.from_parts(
            self.error_type,
            self.code,
            self.message,
            kind=self.kind,
            exception_type=self.exception_type,
            traceback=self.traceback,
            worker=self.worker,
        )


class ActionSummary(WireModel):
    """An action as the run's metadata records it."""

    name: str
    parent: str | None
    task: str
    group: str | None = None
    phase: Phase
    attempts: int = 0
    cached: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    error: ErrorInfo | None = None
    output: WireValue | None = None
    """Kept for succeeded actions, so `flyte.rerun(..., recover=True)` can reuse them."""


class RunSummary(WireModel):
    """A run as its metadata directory (local) or the gateway (remote) records it."""

    name: str
    task: str
    phase: Phase
    project: str
    domain: str
    created_at: float
    ended_at: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, WireValue] = Field(default_factory=dict)
    output: WireValue | None = None
    error: ErrorInfo | None = None
    action_count: int = 0
