"""The task registry: deployed environments' task versions, immutable once written.

One key per environment version (`gateway._keys.env_version_key`) holds all its task specs, and one pointer per
environment names its latest version; a deployment writes both in one transaction, so a reader never sees half a
deployment. Redeploying a version with the same content is a no-op; with other content, a `Conflict`
(`version_exists`).
"""

from __future__ import annotations

import hashlib
import json
import time

from flyte._wire import DeployRequest, TaskVersion
from gateway._domain_errors import Busy, Conflict, Invalid, NotFound
from gateway._keys import env_version_key, env_versions_prefix, latest_key, latest_prefix
from gateway.store import Compare, Put, Store


class EnvVersion:
    """The stored form: an environment at one version with all its tasks."""

    @staticmethod
    def encode(request: DeployRequest, content_digest: str, deployed_at: float) -> bytes:
        return json.dumps(
            {
                "request": request.model_dump(mode="json"),
                "content_digest": content_digest,
                "deployed_at": deployed_at,
            }
        ).encode()

    @staticmethod
    def decode(value: bytes) -> tuple[DeployRequest, str, float]:
        data = json.loads(value)
        return DeployRequest.model_validate(data["request"]), data["content_digest"], data["deployed_at"]


def content_digest(request: DeployRequest) -> str:
    canonical = json.dumps(
        {
            "bundle": request.bundle_digest,
            # Where the files were deployed from is not content: another checkout of the same code is the same version.
            "tasks": [t.model_dump(mode="json", exclude={"source_root"}) for t in request.tasks],
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _versions(request: DeployRequest, digest: str, deployed_at: float) -> list[TaskVersion]:
    return [
        TaskVersion(
            project=request.project,
            domain=request.domain,
            env=request.env,
            version=request.version,
            bundle_digest=request.bundle_digest,
            spec=spec,
            content_digest=digest,
            deployed_at=deployed_at,
        )
        for spec in request.tasks
    ]


class Registry:
    def __init__(self, store: Store):
        self._store = store
        # Deployed versions never change, so an exact version is safe to remember.
        self._exact: dict[tuple[str, str, str, str], TaskVersion] = {}

    async def deploy(self, request: DeployRequest) -> tuple[list[TaskVersion], bool]:
        """Write a deployment; returns its task versions and whether anything new was written."""
        for spec in request.tasks:
            if spec.name.partition(".")[0] != request.env:
                raise Invalid(f"task {spec.name} is not in environment {request.env}")
        names = [spec.name for spec in request.tasks]
        if len(set(names)) != len(names):
            raise Invalid("a deployment names a task twice")
        digest = content_digest(request)
        key = env_version_key(request.project, request.domain, request.env, request.version)
        pointer_key = latest_key(request.project, request.domain, request.env)
        now = time.time()
        for _ in range(5):
            existing = await self._store.get(key)
            if existing is not None:
                _, existing_digest, deployed_at = EnvVersion.decode(existing.value)
                if existing_digest != digest:
                    raise Conflict(
                        f"{request.env} version {request.version} is already deployed with other content; "
                        "versions are immutable: deploy a new version",
                        code="version_exists",
                    )
                return _versions(request, digest, deployed_at), False
            latest = await self._store.get(pointer_key)
            pointer = json.dumps({"version": request.version, "deployed_at": now}).encode()
            result = await self._store.txn(
                [Compare(key, 0), Compare(pointer_key, latest.mod_revision if latest else 0)],
                [Put(key, EnvVersion.encode(request, digest, now)), Put(pointer_key, pointer)],
            )
            if result.succeeded:
                return _versions(request, digest, now), True
        raise Busy("the deployment raced with others; try again")

    async def latest_version(self, project: str, domain: str, env: str) -> str | None:
        kv = await self._store.get(latest_key(project, domain, env))
        return None if kv is None else str(json.loads(kv.value)["version"])

    async def get(self, project: str, domain: str, task: str, version: str | None) -> TaskVersion:
        exact = self._exact.get((project, domain, task, version or ""))
        if exact is not None:
            return exact
        found = await self._get(project, domain, task, version)
        if len(self._exact) > 10_000:
            self._exact.clear()
        self._exact[(project, domain, task, found.version)] = found
        return found

    async def _get(self, project: str, domain: str, task: str, version: str | None) -> TaskVersion:
        env = task.partition(".")[0]
        if version is None or version == "latest":
            version = await self.latest_version(project, domain, env)
            if version is None:
                raise NotFound(f"no task {task} is deployed in {project}/{domain}")
        kv = await self._store.get(env_version_key(project, domain, env, version))
        if kv is None:
            raise NotFound(f"no version {version} of {task} in {project}/{domain}")
        request, digest, deployed_at = EnvVersion.decode(kv.value)
        for spec in request.tasks:
            if spec.name == task:
                return _versions(request.model_copy(update={"tasks": [spec]}), digest, deployed_at)[0]
        raise NotFound(f"{env} version {version} has no task {task}")

    async def list_latest(self, project: str, domain: str) -> list[TaskVersion]:
        pointers, _ = await self._store.range(latest_prefix(project, domain))
        found: list[TaskVersion] = []
        for pointer in pointers:
            env = pointer.key.rsplit("/", 1)[1]
            kv = await self._store.get(env_version_key(project, domain, env, json.loads(pointer.value)["version"]))
            if kv is not None:
                request, digest, deployed_at = EnvVersion.decode(kv.value)
                found += _versions(request, digest, deployed_at)
        return found

    async def list_versions(self, project: str, domain: str, task: str) -> list[TaskVersion]:
        env = task.partition(".")[0]
        kvs, _ = await self._store.range(env_versions_prefix(project, domain, env))
        found: list[TaskVersion] = []
        for kv in kvs:
            request, digest, deployed_at = EnvVersion.decode(kv.value)
            found += [v for v in _versions(request, digest, deployed_at) if v.spec.name == task]
        if not found:
            raise NotFound(f"no task {task} is deployed in {project}/{domain}")
        return sorted(found, key=lambda v: v.deployed_at)
