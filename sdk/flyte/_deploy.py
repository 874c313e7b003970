"""`flyte.deploy`: freeze environments and their tasks as a version.

The code bundle of an environment is the set of source files its tasks are defined in, content-hashed; the
default version is a digest of the bundle and the environment's settings, so unchanged code deploys as the same
version. Local mode records deployments under the flyte home (so `flyte.remote.Task` can list them); remote mode
uploads the bundle (a reproducible tar.gz: sorted entries, fixed times and owners) and the task specs to the
gateway, which refuses to change a version that exists.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import current_config
from ._environment import TaskEnvironment
from ._image import Image
from ._naming import digest_text
from ._paths import flyte_home
from ._task import TaskTemplate
from ._wire import DeployRequest, ParameterSpec, TaskSpec
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
    deployments = []
    for env in _closure(envs):
        bundle = code_bundle(env)
        env_version = version or digest_text(bundle.digest, _settings_text(env))
        deployments.append(Deployment(env, env_version, bundle, tuple(t.name for t in env.tasks.values()), dry_run))
    if dry_run:
        return deployments
    if current_config().is_remote:
        from ._client import call_sync

        call_sync(_deploy_remote(deployments))
    else:
        _record_local(deployments)
    return deployments


async def _deploy_remote(deployments: list[Deployment]) -> None:
    from ._client import GatewayError, client_for

    client = client_for()
    for d in deployments:
        try:
            digest = await client.put_blob(bundle_archive(d.bundle), client.project)
            await client.deploy(
                DeployRequest(
                    project=client.project,
                    domain=client.domain,
                    env=d.env.name,
                    version=d.version,
                    bundle_digest=digest,
                    tasks=[task_spec(t) for t in d.env.tasks.values()],
                )
            )
        except GatewayError as error:
            raise DeploymentError(f"deploying {d.env.name} version {d.version}: {error.message}") from None


def bundle_archive(bundle: CodeBundle) -> bytes:
    """The bundle as a reproducible tar.gz: the same files always give the same bytes, hence the same digest."""
    root = Path(os.path.commonpath([p.parent for p in bundle.files])) if bundle.files else Path(".")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in bundle.files:
            data = path.read_bytes()
            info = tarfile.TarInfo(str(path.relative_to(root)))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def task_spec(task: TaskTemplate[..., Any]) -> TaskSpec:
    """What the gateway keeps of a task: its interface, and the settings agents need to run it."""
    s = task.settings
    interface = task.interface
    params = []
    for p in interface.parameters:
        default_json = None
        if not p.required:
            try:
                default_json = json.dumps(p.default)
            except (TypeError, ValueError):
                default_json = None
        params.append(
            ParameterSpec(name=p.name, type=_type_text(p.annotation), required=p.required, default_json=default_json)
        )
    image = task.env.image
    return TaskSpec(
        name=task.name,
        short_name=s.short_name,
        signature=interface.signature_text,
        interface_digest=interface.digest,
        inputs=params,
        output=_type_text(interface.returns) if interface.has_output else "None",
        is_async=task.is_async,
        resources=s.resources.to_dict() if s.resources is not None else {},
        retries=s.retries.count,
        backoff={"base": s.retries.backoff.base, "factor": s.retries.backoff.factor, "cap": s.retries.backoff.cap},
        timeout_seconds=s.timeout.max_runtime_seconds if s.timeout is not None else None,
        cache={**s.cache.to_dict(), "version": _cache_version(task)} if s.cache.is_enabled else {},
        reusable=dict(s.reusable.to_dict()) if s.reusable is not None else None,
        placement=s.placement.to_dict() if s.placement is not None else None,
        queue=s.queue,
        image=image.uri if isinstance(image, Image) else None,
        env_vars=dict(s.env_vars),
        secrets=[secret.key for secret in s.secrets],
        max_inline_io_bytes=s.max_inline_io_bytes,
    )


def _cache_version(task: TaskTemplate[..., Any]) -> str:
    from ._local_controller import source_version

    return task.settings.cache.version_override or source_version(task.func)


def _type_text(annotation: object) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


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
