"""`flyte.deploy`: freeze environments and their tasks as a version.

The code bundle of an environment is the whole source root of its tasks' program (see `_source`) with a manifest
naming the modules that define the tasks, content-hashed; the default version is a digest of the bundle and the
environment's settings, so unchanged code deploys as the same version, and an unchanged bundle is not uploaded
again. Local mode records deployments under the flyte home (so `flyte.remote.Task` can list them); remote mode
uploads the bundle (a reproducible tar.gz: sorted entries, fixed times and owners) and the task specs to the
gateway, which refuses to change a version that exists.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import io
import json
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
from ._source import (
    BUNDLE_MANIFEST,
    SourceFile,
    check_size,
    human_size,
    list_source_files,
    max_bundle_bytes,
    source_root,
)
from ._task import TaskTemplate
from ._trigger import trigger_specs
from ._wire import (
    BackoffSpec,
    CacheSpec,
    DeployRequest,
    ParameterSpec,
    PlacementSpec,
    ResourcesSpec,
    ReusableSpec,
    SecretRef,
    TaskSpec,
)
from .errors import DeploymentError


@dataclass(frozen=True)
class CodeBundle:
    """An environment's code: the files of its source root, the modules that define its tasks, and a digest."""

    root: Path
    files: tuple[SourceFile, ...]
    modules: tuple[str, ...]
    """Imported by the worker, in this order, to define the environment's tasks."""
    paths: tuple[str, ...]
    """Folders (relative to the root, "" for the root itself) the worker puts on `sys.path`, first one first."""
    digest: str
    contents: tuple[bytes, ...] = dataclasses.field(default=(), repr=False, compare=False)
    """The files' bytes as read once: the digest and the archive are of the same bytes."""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> bytes:
        return json.dumps({"modules": list(self.modules), "paths": list(self.paths)}, sort_keys=True).encode()

    def listing(self) -> list[str]:
        """One line per file with its size, and the total: what `flyte deploy --dry-run` shows."""
        lines = [f"    {human_size(f.size):>10}  {f.relative}" for f in self.files]
        lines.append(f"    {human_size(self.size):>10}  total, {len(self.files)} files from {self.root}")
        return lines


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
        for task in self.env.tasks.values():
            # The gateway runs them while this is the latest version (docs/schedules.md).
            lines += [f"  trigger {t.name} of {task.name}: {t.automation}" for t in task.settings.triggers]
        b = self.bundle
        lines.append(f"  code bundle {b.digest} ({len(b.files)} files, {human_size(b.size)}) from {b.root}")
        if self.dry_run:
            lines += b.listing()
        return "\n".join(lines)


def _task_module(task: TaskTemplate[..., Any], root: Path) -> tuple[str, Path]:
    """The module name the worker imports for a task's file, and the folder that name is relative to.

    A module imported by name keeps that name (`pkg.tasks` under `src/` puts `src` on the path); the script that
    was run (`__main__`) is named after its file, with its folder on the path, as Python itself does locally.
    """
    source = inspect.getsourcefile(task.func)
    if source is None:
        raise DeploymentError(f"task {task.name} has no source file to bundle (defined interactively?)")
    path = Path(source).resolve()
    if not path.is_file():
        raise DeploymentError(
            f"task {task.name} is defined in {path}, which is not a file on disk (a notebook cell?): "
            "move it into a module to deploy it"
        )
    if not path.is_relative_to(root):
        raise DeploymentError(f"task {task.name} is defined in {path}, outside the bundle's source root {root}")
    module = task.func.__module__
    parts = module.split(".")
    if module != "__main__" and parts[-1] == (path.parent.name if path.name == "__init__.py" else path.stem):
        base = path.parent
        for _ in range(len(parts) - (0 if path.name == "__init__.py" else 1)):
            base = base.parent
        if base.is_relative_to(root):
            return module, base
    return path.stem, path.parent


def code_bundle(env: TaskEnvironment) -> CodeBundle:
    """The bundle of an environment's tasks: every file of their source root that no ignore rule leaves out."""
    tasks = list(env.tasks.values())
    if not tasks:
        raise DeploymentError(f"environment {env.name} has no tasks to bundle")
    first = inspect.getsourcefile(tasks[0].func)
    if first is None:
        raise DeploymentError(f"task {tasks[0].name} has no source file to bundle (defined interactively?)")
    configured = current_config().root_dir
    # `init(root_dir=)` names the source root, as in Flyte 2; else the project's folder holding the first task.
    if configured is not None and Path(first).resolve().is_relative_to(configured.resolve()):
        root = configured.resolve()
    else:
        root = source_root(Path(first))
    modules: list[str] = []
    paths: list[str] = []
    for task in tasks:
        module, base = _task_module(task, root)
        relative = base.relative_to(root).as_posix().removeprefix(".")
        if module not in modules:
            modules.append(module)
        if relative not in paths:
            paths.append(relative)
    if "" not in paths:
        paths.append("")
    listed = list_source_files(root)
    check_size(root, listed, max_bundle_bytes())
    files: list[SourceFile] = []
    contents: list[bytes] = []
    for f in listed:
        try:
            data = (root / f.relative).read_bytes()
        except FileNotFoundError:
            continue  # gone since it was listed (a temporary file of a running program): not part of the code
        files.append(SourceFile(f.relative, len(data)))
        contents.append(data)
    bundle = CodeBundle(root, tuple(files), tuple(modules), tuple(paths), "", tuple(contents))
    h = hashlib.sha256(bundle.manifest())
    for f, data in zip(files, contents, strict=True):
        h.update(f.relative.encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return dataclasses.replace(bundle, digest=h.hexdigest()[:16])


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
    if env._secrets:
        # Only when there are some: the versions of environments without secrets stay as they were.
        fields["secrets"] = [secret.to_dict() for secret in env._secrets]
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
            archive = bundle_archive(d.bundle)
            digest = hashlib.sha256(archive).hexdigest()
            # An unchanged bundle is already stored under its digest: only its deployment record is new.
            if not await client.has_blob(digest, client.project):
                await client.put_blob(archive, client.project)
            await client.deploy(
                DeployRequest(
                    project=client.project,
                    domain=client.domain,
                    env=d.env.name,
                    version=d.version,
                    bundle_digest=digest,
                    tasks=[task_spec(t, str(d.bundle.root)) for t in d.env.tasks.values()],
                )
            )
        except GatewayError as error:
            raise DeploymentError(f"deploying {d.env.name} version {d.version}: {error.message}") from None


def bundle_archive(bundle: CodeBundle) -> bytes:
    """The bundle as a reproducible tar.gz: the same files always give the same bytes, hence the same digest."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        entries = [(BUNDLE_MANIFEST, bundle.manifest())]
        entries += [(f.relative, data) for f, data in zip(bundle.files, bundle.contents, strict=True)]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def task_spec(task: TaskTemplate[..., Any], source_root: str | None = None) -> TaskSpec:
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
            ParameterSpec(
                name=p.name,
                type=_type_text(p.annotation),
                required=p.required,
                default_json=default_json,
                kind=p.codec.kind,
                json_schema=p.codec.json_schema(),
            )
        )
    image = task.env.image
    return TaskSpec(
        name=task.name,
        short_name=s.short_name,
        signature=interface.signature_text,
        interface_digest=interface.digest,
        inputs=params,
        output=_type_text(interface.returns) if interface.has_output else "None",
        output_kind=interface.output_codec.kind,
        output_schema=interface.output_codec.json_schema() if interface.has_output else None,
        is_async=task.is_async,
        resources=ResourcesSpec.model_validate(s.resources.to_dict() if s.resources is not None else {}),
        retries=s.retries.count,
        backoff=BackoffSpec.model_validate(s.retries.backoff.to_dict()),
        timeout_seconds=s.timeout.max_runtime_seconds if s.timeout is not None else None,
        max_queued_seconds=s.timeout.max_queued_seconds if s.timeout is not None else None,
        cache=CacheSpec.model_validate(
            {**s.cache.to_dict(), "version": _cache_version(task)} if s.cache.is_enabled else {}
        ),
        reusable=ReusableSpec.model_validate(s.reusable.to_dict()) if s.reusable is not None else None,
        placement=PlacementSpec.model_validate(s.placement.to_dict()) if s.placement is not None else None,
        queue=s.queue,
        image=image.uri if isinstance(image, Image) else None,
        image_spec=image.to_dict() if isinstance(image, Image) and image.layers else None,
        env_vars=dict(s.env_vars),
        secrets=[SecretRef.model_validate(secret.to_dict()) for secret in s.secrets],
        max_inline_io_bytes=s.max_inline_io_bytes,
        source_root=source_root,
        triggers=trigger_specs(task),
    )


def _cache_version(task: TaskTemplate[..., Any]) -> str:
    from ._local_controller import source_version

    return task.settings.cache.version_for(task.func, task.env.image, lambda: source_version(task.func))


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
                "files": [str(d.bundle.root / f.relative) for f in d.bundle.files],
                "deployed_at": time.time(),
            }
            out.write(json.dumps(record) + "\n")


def local_deployments() -> list[dict[str, Any]]:
    path = flyte_home() / "local" / "deployments.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
