"""`remote.Action`: one action of a recorded run."""

from __future__ import annotations

from dataclasses import dataclass

from .._wire import ActionSummary, ErrorInfo, Phase


@dataclass(frozen=True)
class Action:
    name: str
    parent: str | None
    task: str
    phase: Phase
    attempts: int
    cached: bool
    group: str | None
    error: ErrorInfo | None
    cluster: str | None = None
    """Where the current attempt was placed (remote runs)."""
    waiting: str | None = None
    """Why a queued action is not placed yet (remote runs)."""

    @classmethod
    def _from(cls, s: ActionSummary) -> Action:
        return cls(s.name, s.parent, s.task, s.phase, s.attempts, s.cached, s.group, s.error, s.cluster, s.waiting)
