"""`flyte.deploy`: freeze environments and their tasks as a version.

The code bundle of an environment is the set of source files its tasks are defined in, content-hashed; the
default version is a digest of the bundle and the environment's settings, so unchanged code deploys as the same
version. Local mode records deployments under the flyte home (so `flyte.remote.Task` can list them); remote mode
will upload the bundle and task specs to the gateway.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import current_config
from ._environment import TaskEnvironment
from ._naming import digest_text
from ._paths import flyte_home
from .errors import DeploymentError


@dataclass(frozen=True)
class CodeBundle:
    """The source files of an environment's tasks and their content digest."""

    files: tuple[Path, ...]
    digest: str


@dataclass(frozen=True)
class Deployment:
    """One environment deployed at one version."""

    env: TaskEnvironment
    version: str
    bundle: CodeBundle
    tasks: tuple[str, ...]
    dry_run: bool = False

    def summary_repr(self) -> str:
        lines = [f"Deployment of environment {self.env.name} at version {self.version}"]
        if self.dry_run:
            lines[0] += " (dry run)"
        lines += [f"  task {name}" for name in self.tasks]
        lines.append(f"  code bundle {self.bundle.digest} ({len(self.bundle.files)} files)")
        return "\n".join(lines)


def code_bundle(env: TaskEnvironment) -> CodeBundle:
    files: set[Path] = set()
    for task in env.tasks.values():
        source = inspect.getsourcefile(task.func)
        if source is None:
            raise DeploymentError(f"task {task.name} has no source file to bundle (defined interactively?)")
        files.add(Path(source).resolve())
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return CodeBundle(tuple(sorted(files)), h.hexdigest()[:16])


def _closure(envs: tuple[TaskEnvironment, ...]) -> list[TaskEnvironment]:
    """The environments and everything they depend on, each once, the requested ones first."""
    ordered: list[TaskEnvironment] = []
    pending = list(envs)
    while pending:
        env = pending.pop(0)
        if env not in ordered:
            ordered.append(env)
            pending.extend(env.depends_on)
    return ordered


def _settings_text(env: TaskEnvironment) -> str:
    fields: dict[str, Any] = {
        "image": repr(env.image),
        "resources": repr(env.resources),
        "reusable": repr(env.reusable),
        "env_vars": env.env_vars or {},
        "queue": env.queue,
        "placement": repr(env.placement),
    }
    return json.dumps(fields, sort_keys=True)


def deploy(*envs: TaskEnvironment, version: str | None = None, dry_run: bool = False) -> list[Deployment]:
    """Deploy environments (and those they depend on) as immutable task versions."""
    if not envs:
        raise DeploymentError("deploy: name at least one TaskEnvironment")
    for env in envs:
        if not isinstance(env, TaskEnvironment):
            raise DeploymentError(f"deploy: {env!r} is not a TaskEnvironment")
    if current_config().is_remote:
        raise NotImplementedError("deploying to a gateway needs the gateway issue; use local mode for now")
    deployments = []
    for env in _closure(envs):
        bundle = code_bundle(env)
        env_version = version or digest_text(bundle.digest, _settings_text(env))
        deployments.append(Deployment(env, env_version, bundle, tuple(t.name for t in env.tasks.values()), dry_run))
    if not dry_run:
        _record_local(deployments)
    return deployments


def _record_local(deployments: list[Deployment]) -> None:
    path = flyte_home() / "local" / "deployments.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for d in deployments:
            record = {
                "env": d.env.name,
                "version": d.version,
                "tasks": list(d.tasks),
                "files": [str(f) for f in d.bundle.files],
                "deployed_at": time.time(),
            }
            out.write(json.dumps(record) + "\n")


def local_deployments() -> list[dict[str, Any]]:
    path = flyte_home() / "local" / "deployments.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
