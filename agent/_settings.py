"""What an attempt gets besides its code and assignment: the task's environment variables (later its secrets and
the Python of its image), prepared once per attempt by the agent and handed to whichever way it runs (a cold
process, a spare, a pool's workers)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from flyte._wire import TaskSpec


@dataclass(frozen=True)
class Prepared:
    env: dict[str, str] = field(default_factory=dict)
    """The task's `env_vars`: over the agent's own environment, under the FLYTE_* variables the worker needs."""
    python: str = sys.executable
    """The interpreter the attempt runs with."""


def prepare_env(task: TaskSpec) -> Prepared:
    return Prepared(env=dict(task.env_vars))
