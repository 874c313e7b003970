"""The secret store: per-project secrets, encrypted at rest, written by users and read only by the workers that need
them.

Values are sealed with AES-GCM under a 256-bit key the gateway is given (`flyte gateway serve --secrets-key-file`),
with a fresh 96-bit nonce each, and the secret's `project/name` as associated data: a sealed value copied under
another name or project does not open. The store holds only `{nonce+ciphertext, updated_at}`.

Values are write-only through the API: create, list (names only) and delete are for users (`deploy` scope, per
project); the one route that answers values is for a worker of a run (`worker:RUN`), and it answers exactly the
secrets that the action's deployed task declares, from the run's own project. A declared secret that is not set is
a 404 naming it, which the agent turns into a user error that fails the attempt at once. Nothing here logs a value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import time
from pathlib import Path

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from flyte._wire import SecretInfo, SecretValues, SecretWrite
from gateway._api import Route, _json, _name, read_model, services
from gateway._auth import principal_of
from gateway._errors import ApiError, not_found
from gateway._keys import secret_key, secrets_prefix

SECRET_KEY = web.AppKey("secret_key", AESGCM)
_SECRET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_NONCE_BYTES = 12


class SealedSecret(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sealed: str
    """base64 of nonce + AES-GCM ciphertext and tag."""
    updated_at: float


def load_key(path: Path) -> AESGCM:
    """The key from a file of 32 random bytes as base64 (`generate_key_file` writes one); refused when other users
    may read it."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"secrets key file {path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secrets key file {path} is not base64") from None
    if len(key) != 32:
        raise ValueError(f"secrets key file {path} holds {len(key)} bytes; it must hold 32 (a 256-bit key)")
    return AESGCM(key)


def generate_key_file(path: Path) -> None:
    """Write a new random key, readable by its owner only (created 0600, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")


def _key_of(request: web.Request) -> AESGCM:
    key = request.app.get(SECRET_KEY)
    if key is None:
        message = "this gateway keeps no secrets: start it with `flyte gateway serve --secrets-key-file`"
        raise ApiError(503, "no_secrets_key", message)
    return key


def _secret_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _SECRET_NAME.match(name):
        raise ApiError(400, "bad_request", f"secret name {name!r} must be 1-128 letters, digits, '-', '_' or '.'")
    return name


def _aad(project: str, name: str) -> bytes:
    return f"{project}/{name}".encode()


async def put_secret(request: web.Request) -> web.Response:
    project, name = _name(request, "project", "default"), _secret_name(request)
    principal_of(request).require("deploy", project=project)
    body = await read_model(request, SecretWrite)
    key = _key_of(request)
    nonce = os.urandom(_NONCE_BYTES)
    sealed = nonce + key.encrypt(nonce, body.value.encode(), _aad(project, name))
    record = SealedSecret(sealed=base64.b64encode(sealed).decode(), updated_at=time.time())
    await services(request).store.put(secret_key(project, name), record.model_dump_json().encode())
    return _json(SecretInfo(project=project, name=name, updated_at=record.updated_at), status=201)


async def list_secrets(request: web.Request) -> web.Response:
    project = _name(request, "project", "default")
    principal_of(request).require("deploy", "run", project=project)
    kvs, _ = await services(request).store.range(secrets_prefix(project))
    infos = [
        SecretInfo(
            project=project,
            name=kv.key.rpartition("/")[2],
            updated_at=SealedSecret.model_validate_json(kv.value).updated_at,
        )
        for kv in kvs
    ]
    return _json(sorted(infos, key=lambda info: info.name))


async def delete_secret(request: web.Request) -> web.Response:
    project, name = _name(request, "project", "default"), _secret_name(request)
    principal_of(request).require("deploy", project=project)
    store = services(request).store
    kv = await store.get(secret_key(project, name))
    if kv is None:
        raise not_found(f"no secret named {name} in project {project}; `flyte get secrets` lists them")
    await store.delete(secret_key(project, name))
    updated_at = SealedSecret.model_validate_json(kv.value).updated_at
    return _json(SecretInfo(project=project, name=name, updated_at=updated_at))


async def action_secrets(request: web.Request) -> web.Response:
    """The values of the secrets the action's task declares: only for a worker of this run."""
    svc = services(request)
    run = await svc.runs.get_run(request.match_info["run"])
    principal = principal_of(request)
    principal.require(f"worker:{run.name}", project=run.project)
    if principal.attempt is not None and principal.attempt.action != request.match_info["action"]:
        # A worker token acts for its own attempt: another action's secrets are not its to read.
        raise ApiError(403, "forbidden", "this worker token may read only its own action's secrets")
    action = await svc.runs.get_action(run.name, request.match_info["action"])
    task = await svc.registry.get(run.project, run.domain, action.task, action.version)
    values: dict[str, str] = {}
    for ref in task.spec.secrets:
        if ref.key in values:
            continue
        kv = await svc.store.get(secret_key(run.project, ref.key))
        if kv is None:
            raise ApiError(
                404,
                "secret_not_found",
                f"secret {ref.key!r} is not set in project {run.project!r}: "
                f"`flyte create secret {ref.key} --project {run.project}`",
            )
        values[ref.key] = _open(_key_of(request), run.project, ref.key, kv.value)
    return _json(SecretValues(values=values))


def _open(key: AESGCM, project: str, name: str, stored: bytes) -> str:
    sealed = base64.b64decode(SealedSecret.model_validate_json(stored).sealed)
    try:
        return key.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(project, name)).decode()
    except InvalidTag:
        raise ApiError(
            500, "secret_unreadable", f"secret {name!r} of project {project!r} was sealed with another key"
        ) from None


SECRET_ROUTES: list[Route] = [
    Route(
        "PUT",
        "/api/v1/secrets/{name}",
        put_secret,
        "Set a secret of ?project= (write-only: its value is never answered back)",
        SecretWrite,
        SecretInfo,
    ),
    Route("GET", "/api/v1/secrets", list_secrets, "The secrets of ?project=, names only", None, SecretInfo, many=True),
    Route("DELETE", "/api/v1/secrets/{name}", delete_secret, "Delete a secret of ?project=", None, SecretInfo),
    Route(
        "POST",
        "/api/v1/runs/{run}/actions/{action}/secrets",
        action_secrets,
        "The values of the secrets the action's task declares (a worker of the run only)",
        None,
        SecretValues,
    ),
]
