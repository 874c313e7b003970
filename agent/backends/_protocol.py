"""The agent backend protocol: how an agent runs one attempt of an action somewhere (a process, a pod).

The agent prepares everything the worker needs (the extracted code bundle, the command line, the environment
with the gateway endpoint, the run-scoped token and the action's identity) into a `LaunchSpec`; the backend
starts it with the resource limits it can enforce, streams its output to `on_output`, and reports how it ended
as an `Exit`. Whether the task succeeded is the worker's to report to the gateway; the backend reports only what
it alone can see: the process ended, was killed, ran out of memory, or vanished.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flyte._wire import ResourcesSpec

OutputSink = Callable[[str, bytes], None]
"""Called with ("stdout" | "stderr", a chunk of bytes) as the attempt writes."""


@dataclass(frozen=True)
class LaunchSpec:
    key: str
    """Unique per attempt: `{run}/{action}/{attempt}`; a second launch of the same key is refused."""
    command: list[str]
    env: dict[str, str]
    cwd: Path
    memory_limit_bytes: int | None = None
    cpu_limit: float | None = None
    """Cores; enforced where the backend can (cgroup cpu quota)."""
    timeout_seconds: float | None = None
    """Wall-clock limit after which the backend kills the attempt and reports `Exit(TIMEOUT)`."""
    labels: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    """Environment whose values are secret (the run-scoped token): a pod reads them from a Secret, never from its
    spec; a local process gets them with `env`."""
    secret_files: dict[str, str] = field(default_factory=dict)
    """Secret values by the absolute path a pod mounts them at (a `Secret`'s `mount/key`); a local process gets
    its files from the agent instead (under `$FLYTE_SECRETS_DIR`)."""
    image: str | None = None
    """The container image of a pod backend (the environment's `flyte.Image` URI); None: the backend's default."""
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    """Requests and limits as `flyte.Resources` declares them (cpu, memory, gpu type and count, disk, shm),
    for backends that hand them to a scheduler; the process backend uses the two limits above."""
    traceparent: str | None = None
    """The W3C traceparent of the attempt's span, passed to the worker as TRACEPARENT."""


class ExitKind(enum.Enum):
    EXITED = "exited"
    """The process ended by itself; `code` says how."""
    OOM = "oom"
    """Killed by the memory limit."""
    TIMEOUT = "timeout"
    KILLED = "killed"
    """Killed on request (abort) or by a signal from outside."""
    LOST = "lost"
    """The backend lost track of it (node gone, pod evicted)."""
    UNSTARTABLE = "unstartable"
    """It could not start for a reason only its owner can fix (its image cannot be pulled, its container refers to
    a missing Secret); retrying would fail the same way."""
    START_FAILED = "start_failed"
    """A worker ended before it could take its attempt (its code kills the interpreter as it loads): the user's
    error; `output` holds what it printed."""


@dataclass(frozen=True)
class Exit:
    kind: ExitKind
    code: int | None = None
    detail: str = ""
    output: str = ""
    """The end of what the process printed, when the backend kept it (for an error record's traceback)."""


@dataclass(frozen=True)
class Capacity:
    """Amounts by resource name as the agent registers them: cpu (cores), memory (bytes), pods, gpu and
    `gpu:<type>`."""

    allocatable: dict[str, float]
    free: dict[str, float]


class Handle(Protocol):
    key: str

    async def wait(self) -> Exit: ...

    async def kill(self, reason: str) -> None:
        """Stop the attempt (and everything it started); `wait` then answers KILLED."""
        ...


class Backend(Protocol):
    name: str
    runs_on_this_host: bool
    """True when attempts run on the agent's machine and can use its files: the bundles the agent extracts and
    the Unix sockets of spares and pools. A pod backend's workers fetch their bundle from the gateway instead."""

    async def launch(self, spec: LaunchSpec, on_output: OutputSink) -> Handle: ...

    def capacity(self) -> Capacity | None:
        """What the backend measures (a cluster's nodes, less its pods' requests), or None when the agent's own
        accounting holds: what it was told to offer, less what it runs."""
        ...

    async def close(self) -> None:
        """Kill everything still running and release what the backend holds (cgroups, watches)."""
        ...
