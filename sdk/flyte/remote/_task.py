"""`remote.Task.get`: a callable reference to a deployed task, usable inside other environments' tasks."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from .._config import current_config
from .._context import current_action
from .._deploy import local_deployments
from .._environment import registered_environments
from .._task import TaskTemplate
from ..errors import RemoteTaskNotFoundError


@dataclass(frozen=True)
class TaskReference:
    """A deployed task by name; awaiting a call runs it as a child action of the calling task."""

    name: str
    version: str | None
    auto_version: str | None = None

    def resolve(self) -> TaskTemplate[..., Any]:
        env_name, _, func_name = self.name.rpartition(".")
        env = registered_environments().get(env_name)
        task = env.tasks.get(func_name) if env is not None else None
        if task is None:
            known = sorted(t.name for e in registered_environments().values() for t in e.tasks.values())
            raise RemoteTaskNotFoundError(
                f"no task named {self.name!r}"
                + (f" (version {self.version})" if self.version else "")
                + f"; known tasks: {', '.join(known) or 'none'}"
            )
        return task

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self.aio(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        task = self.resolve()
        if current_action.get() is None:
            raise RemoteTaskNotFoundError(
                f"{self.name} is a deployed task: call it from inside a task, or run it with flyte.run"
            )
        pinned = self.version or ("latest" if self.auto_version == "latest" else None)
        if pinned is not None:
            # In a remote worker the child runs the deployed version asked for, not the caller's own version.
            task = task.override()
            task.deployed_version = pinned
        return task.aio(*args, **kwargs)

    @property
    def interface(self) -> str:
        return self.resolve().interface.signature_text


@dataclass(frozen=True)
class TaskInfo:
    """A deployed task version, as `Task.listall()` lists it."""

    name: str
    env: str
    version: str
    deployed_at: float
    signature: str | None = None


class Task:
    """Deployed tasks."""

    @staticmethod
    def get(
        name: str, version: str | None = None, auto_version: Literal["latest", "current"] | None = None
    ) -> TaskReference:
        """A reference to task `env.func` at `version`, or the latest (or the caller's current) version."""
        if not isinstance(name, str) or "." not in name:
            raise ValueError(f"remote.Task.get: name={name!r} must be '<environment>.<task>'")
        if version is not None and auto_version is not None:
            raise ValueError("remote.Task.get: give version or auto_version, not both")
        if auto_version not in (None, "latest", "current"):
            raise ValueError(f"remote.Task.get: auto_version={auto_version!r} must be 'latest' or 'current'")
        return TaskReference(name, version, auto_version)

    @staticmethod
    def listall() -> list[TaskInfo]:
        """The latest deployed version of every task (from the gateway, or this machine's local deployments)."""
        if current_config().is_remote:
            from .._client import call_sync, client_for

            versions = call_sync(client_for().list_tasks())
            return [TaskInfo(v.spec.name, v.env, v.version, v.deployed_at, v.spec.signature) for v in versions]
        latest: dict[str, TaskInfo] = {}
        for record in local_deployments():
            for name in record["tasks"]:
                latest[name] = TaskInfo(name, record["env"], record["version"], record["deployed_at"])
        return sorted(latest.values(), key=lambda t: t.name)
