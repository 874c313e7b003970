"""`remote.Task.get`: a callable reference to a deployed task, usable inside other environments' tasks.

In remote mode (an endpoint configured, and in every remote worker) a reference resolves from the gateway's task
registry by name, version (or the latest), project and domain, with the interface of its deployed spec: the caller
needs none of the task's code (see `flyte._remote_task`). In local mode there is no registry: a reference resolves
to a task whose code this process has loaded.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from .._config import current_config
from .._context import current_action
from .._deploy import local_deployments
from .._environment import registered_environments
from .._remote_task import RemoteTask, fetch_task_version
from .._task import TaskTemplate
from ..errors import RemoteTaskNotFoundError


@dataclass(frozen=True)
class TaskReference:
    """A deployed task by name; awaiting a call runs it as a child action of the calling task."""

    name: str
    version: str | None
    auto_version: str | None = None
    project: str | None = None
    domain: str | None = None

    def _pinned(self) -> str | None:
        """The version asked for: exact, the caller's own ("current"), or None for the latest.

        Flyte 2 insists on `version` or `auto_version`; without either, a call from a task keeps the caller's own
        version (as it always did here) and a run from outside one takes the latest.
        """
        if self.version is not None:
            return self.version
        if self.auto_version != "latest":
            action = current_action.get()
            return action.version if action is not None else None
        return None

    def deployed(self) -> RemoteTask:
        """The task version from the gateway's registry, with its deployed interface (remote mode only)."""
        return RemoteTask(fetch_task_version(self.name, self._pinned(), self.project, self.domain))

    def resolve(self) -> TaskTemplate[..., Any]:
        """The task from code loaded in this process (local mode)."""
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
        action = current_action.get()
        if action is None:
            raise RemoteTaskNotFoundError(
                f"{self.name} is a deployed task: call it from inside a task, or run it with flyte.run"
            )
        if current_config().is_remote:
            if (self.project or action.project, self.domain or action.domain) != (action.project, action.domain):
                raise RemoteTaskNotFoundError(
                    f"{self.name} in {self.project or action.project}/{self.domain or action.domain}: a task calls "
                    f"deployed tasks of its own run's project and domain ({action.project}/{action.domain}); "
                    "start a run of the other project's task with flyte.run instead"
                )
            return self.deployed().aio(*args, **kwargs)
        return self._local().aio(*args, **kwargs)

    def _local(self) -> TaskTemplate[..., Any]:
        task = self.resolve()
        pinned = self.version or ("latest" if self.auto_version == "latest" else None)
        if pinned is not None:
            task = task.override()
            task.deployed_version = pinned
        return task

    def override(self, **settings: Any) -> RemoteTask | TaskTemplate[..., Any]:
        """The task with other settings for the calls made through the result (resources, retries, timeout...)."""
        if current_config().is_remote:
            return self.deployed().override(**settings)
        return self._local().override(**settings)

    @property
    def interface(self) -> str:
        if current_config().is_remote:
            return self.deployed().interface.signature_text
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
        name: str,
        version: str | None = None,
        auto_version: Literal["latest", "current"] | None = None,
        project: str | None = None,
        domain: str | None = None,
    ) -> TaskReference:
        """A reference to task `env.func` at `version`, or the latest (or the caller's current) version, in
        `project`/`domain` (default: the configured ones)."""
        if not isinstance(name, str) or "." not in name:
            raise ValueError(f"remote.Task.get: name={name!r} must be '<environment>.<task>'")
        if version is not None and auto_version is not None:
            raise ValueError("remote.Task.get: give version or auto_version, not both")
        if auto_version not in (None, "latest", "current"):
            raise ValueError(f"remote.Task.get: auto_version={auto_version!r} must be 'latest' or 'current'")
        return TaskReference(name, version, auto_version, project, domain)

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
