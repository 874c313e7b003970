"""The HTTP API under `/api/v1`: one table of routes, from which both the router and the OpenAPI document are made.

Handlers parse and validate their input completely (pydantic models from `flyte._wire`, bounded bodies, checked
query parameters) before they touch the store, so bad input changes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from aiohttp import WSMsgType, web

from flyte._background import Background
from flyte._env import env_int
from flyte._wire import (
    AbortRequest,
    ActionEvent,
    ActionSubmitRequest,
    ActionSummary,
    BlobTransfer,
    CloseCode,
    DeployRequest,
    ErrorBody,
    PartChecksums,
    Phase,
    RunCreateRequest,
    RunSummary,
    RunTrace,
    TaskVersion,
    WatchMessage,
    WireValue,
)
from gateway._auth import Principal, principal_of
from gateway._authz import Act, Target, authorize
from gateway._blob_stores import ClusterBlobStores
from gateway._blobs import MAX_BLOB, BlobStore, Uploader, check_digest
from gateway._domain_errors import Forbidden
from gateway._errors import ApiError, bad_request, describe_validation_error, not_found
from gateway._keys import actions_prefix
from gateway._metrics import Metrics
from gateway._registry import Registry
from gateway._runs import Runs, decode_event
from gateway._s3_multipart import MULTIPART_ID, PART_NUMBERS
from gateway._values import INLINE_VALUE_LIMIT
from gateway.store import Compacted, EventType, Store, StoreError

M = TypeVar("M", bound=pydantic.BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_BODY_LIMIT = 16 * 1024 * 1024
"""The largest JSON request body; blobs have their own, larger limit."""
_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_SNAPSHOT_CHUNK = 500

log = logging.getLogger("flyte.gateway.api")


@dataclass(frozen=True)
class Services:
    store: Store
    registry: Registry
    runs: Runs
    blobs: ClusterBlobStores
    metrics: Metrics
    watchers: set[web.WebSocketResponse]
    """Open watch streams (API and UI)."""
    links: set[web.WebSocketResponse]
    """Open agent sessions and worker links. Closed, with the watches, when the gateway shuts down: a peer told
    the replica is going away reconnects (to another, if there are several) at once, and the shutdown does not wait
    for it to notice on its own."""


SERVICES = web.AppKey("services", Services)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[pydantic.BaseModel] | None = None
    answer: type[pydantic.BaseModel] | None = None
    many: bool = False
    """The answer is a list of `answer`."""


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def read_model(request: web.Request, model: type[M]) -> M:
    if request.content_length is not None and request.content_length > JSON_BODY_LIMIT:
        raise ApiError(413, "too_large", f"the body is {request.content_length} bytes; the limit is {JSON_BODY_LIMIT}")
    body = await request.read()
    if len(body) > JSON_BODY_LIMIT:
        raise ApiError(413, "too_large", f"the body is {len(body)} bytes; the limit is {JSON_BODY_LIMIT}")
    if not body.strip():
        raise bad_request("the body is empty; send a JSON object", code="malformed_json")
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}", code="malformed_json") from None
    except RecursionError:
        raise bad_request("the body is nested too deeply", code="malformed_json") from None
    try:
        return model.model_validate(parsed)
    except pydantic.ValidationError as error:
        raise ApiError(400, "invalid", describe_validation_error(error)) from None


def _check_inline(values: dict[str, WireValue]) -> None:
    for name, value in values.items():
        size = len(value.json_text or "") + len(value.pickle_b64 or "")
        if size > INLINE_VALUE_LIMIT:
            raise ApiError(
                413,
                "value_too_large",
                f"input {name!r} is {size} bytes inline; the limit is {INLINE_VALUE_LIMIT}: upload it as a blob",
            )


def allow(request: web.Request, act: Act, target: Target) -> None:
    """Refuse (403) unless the caller's token may do `act` on `target` (see `gateway._authz`)."""
    authorize(principal_of(request), act, target)


def _name(request: web.Request, field: str, default: str | None = None) -> str:
    value = request.query.get(field, default)
    if value is None or not _NAME.match(value):
        raise bad_request(f"query parameter {field}={value!r} must be a lower-case name")
    return value


def _scope(request: web.Request) -> tuple[str, str]:
    return _name(request, "project", "default"), _name(request, "domain", "development")


def _json(model: pydantic.BaseModel | list[Any], status: int = 200) -> web.Response:
    if isinstance(model, list):
        text = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    else:
        text = model.model_dump_json()
    return web.Response(text=text, status=status, content_type="application/json")


# -- blobs ---------------------------------------------------------------------------------------------------


UPLOADS_PER_TOKEN = env_int("FLYTE_BLOB_UPLOADS_PER_TOKEN", 4)
"""Blob uploads one token may have in flight at once; more are a 429."""
_uploads: collections.Counter[str] = collections.Counter()


def _blob_project(request: web.Request) -> str:
    """The project an upload is for: `?project=`, else the token's own (a worker's, or a token of one project)."""
    principal = principal_of(request)
    if "project" in request.query:
        return _name(request, "project")
    if principal.attempt is not None:
        return principal.attempt.project
    if len(principal.projects) == 1:
        return next(iter(principal.projects))
    return "default"


def _uploader(request: web.Request, project: str) -> Uploader:
    return Uploader(project, principal_of(request).token_id)


async def put_blob(request: web.Request) -> web.Response:
    digest = check_digest(request.match_info["digest"])
    project = _blob_project(request)
    allow(request, Act.BLOB_WRITE, Target(project))
    if request.content_length is not None and request.content_length > MAX_BLOB:
        raise ApiError(413, "too_large", f"the blob is {request.content_length} bytes; the limit is {MAX_BLOB}")
    uploader = principal_of(request).token_id
    if _uploads[uploader] >= UPLOADS_PER_TOKEN:
        raise ApiError(429, "too_many_uploads", f"this token has {UPLOADS_PER_TOKEN} uploads in flight; wait for one")
    _uploads[uploader] += 1
    try:
        svc = services(request)
        await svc.blobs.settle(digest, project)
        created, size = await svc.blobs.put(digest, _counted(request.content.iter_chunked(256 * 1024), svc), project)
    finally:
        _uploads[uploader] -= 1
        if not _uploads[uploader]:
            del _uploads[uploader]
    return web.json_response({"digest": digest, "size": size}, status=201 if created else 200)


async def _readable_blob(request: web.Request) -> tuple[str, ClusterBlobStores]:
    """The digest the path names, once the caller may read that blob (a 404 otherwise)."""
    digest = check_digest(request.match_info["digest"])
    blobs = services(request).blobs
    try:
        allow(request, Act.BLOB_READ, Target(projects=await blobs.projects(digest), agent_projects=_given(request)))
    except Forbidden:
        # Whether another project has these bytes is not this token's business: the same answer as no blob.
        raise not_found(f"no blob {digest}") from None
    return digest, blobs


async def get_blob(request: web.Request) -> web.StreamResponse:
    digest, blobs = await _readable_blob(request)
    response = await blobs.response(digest)
    services(request).metrics.blob_bytes_sent += response.content_length or 0
    return response


async def _counted(chunks: AsyncIterator[bytes], svc: Services) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        svc.metrics.blob_bytes_received += len(chunk)
        yield chunk


async def upload_url(request: web.Request) -> web.Response:
    """A presigned URL to upload a blob straight into the object store, for one project and this digest only."""
    digest = check_digest(request.match_info["digest"])
    project = _blob_project(request)
    allow(request, Act.BLOB_WRITE, Target(project))
    blobs = await services(request).blobs.of_cluster(_cluster(request))
    if "parts" in request.query:
        return await _multipart(request, blobs, digest, project, None)
    url, upload, headers = await blobs.upload_url(digest, _uploader(request, project))
    transfer = BlobTransfer(
        url=url, upload=upload, expires_in=blobs.url_seconds, store=blobs.description, headers=headers
    )
    return _json(transfer, 201)


async def resume_upload(request: web.Request) -> web.Response:
    """A broken multipart upload: the parts the store holds, and fresh URLs for the ones still missing."""
    digest = check_digest(request.match_info["digest"])
    project = _blob_project(request)
    allow(request, Act.BLOB_WRITE, Target(project))
    blobs = await services(request).blobs.of_cluster(_cluster(request))
    return await _multipart(request, blobs, digest, project, _upload_id(request))


async def _multipart(
    request: web.Request, blobs: BlobStore, digest: str, project: str, upload: str | None
) -> web.Response:
    count = _int(request, "parts", 1, len(PART_NUMBERS))
    multipart = _multipart_id(request) if upload is not None else None
    if upload is not None and multipart is None:
        raise bad_request("resuming a multipart upload needs ?multipart=, the id its start answered")
    sha256 = (await read_model(request, PartChecksums)).sha256 if request.can_read_body else []
    if len(sha256) != count:
        raise bad_request(
            f"{len(sha256)} part checksums for {count} parts: send each part's sha256 (base64) in the body, "
            '{"sha256": [...]}, so the store checks every part',
            code="part_checksums",
        )
    uploader = _uploader(request, project)
    resume = (upload, multipart) if upload is not None and multipart is not None else None
    upload, multipart, missing, done = await blobs.multipart_urls(digest, uploader, sha256, resume)
    first = missing[min(missing)] if missing else ""
    transfer = BlobTransfer(
        url=first,
        upload=upload,
        expires_in=blobs.url_seconds,
        store=blobs.description,
        multipart=multipart,
        parts=missing,
        done=done,
    )
    return _json(transfer, 201 if not done else 200)


def _upload_id(request: web.Request) -> str:
    upload = request.match_info["upload"]
    if not re.fullmatch(r"[0-9a-f]{32}", upload):
        raise bad_request(f"an upload id is 32 lower-case hex digits, not {upload[:40]!r}")
    return upload


def _multipart_id(request: web.Request) -> str | None:
    value = request.query.get("multipart")
    if value is not None and not MULTIPART_ID.match(value):
        raise bad_request("?multipart= is the id a multipart upload's start answered")
    return value


def _int(request: web.Request, field: str, low: int, high: int) -> int:
    text = request.query.get(field, "")
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"query parameter {field}={text[:20]!r} must be a whole number from {low} to {high}")
    return int(text)


async def commit_upload(request: web.Request) -> web.Response:
    """A direct upload's bytes are in the store: check them against the digest and make them the blob."""
    digest = check_digest(request.match_info["digest"])
    upload = _upload_id(request)
    project = _blob_project(request)
    allow(request, Act.BLOB_WRITE, Target(project))
    svc = services(request)
    await svc.blobs.settle(digest, project)
    blobs = await svc.blobs.of_cluster(_cluster(request))
    multipart = _multipart_id(request)
    parts = _int(request, "parts", 1, len(PART_NUMBERS)) if multipart is not None else 0
    created, size = await blobs.commit_upload(digest, _uploader(request, project), upload, multipart, parts)
    return web.json_response({"digest": digest, "size": size}, status=201 if created else 200)


async def download_url(request: web.Request) -> web.Response:
    """A presigned URL to download a blob straight from the object store; authorized as reading it is."""
    digest, blobs = await _readable_blob(request)
    cluster = _cluster(request)
    held, mine = await blobs.holding(digest, cluster), await blobs.of_cluster(cluster)
    url = await held.download_url(digest)
    return _json(BlobTransfer(url=url, expires_in=held.url_seconds, store=held.description, remote=held is not mine))


def _cluster(request: web.Request) -> str | None:
    """`?cluster=`: where the caller runs, so its blobs go to (and come first from) that cluster's store. A hint of
    locality only: who may read or write a blob does not depend on it."""
    return _name(request, "cluster") if "cluster" in request.query else None


async def head_blob(request: web.Request) -> web.Response:
    """200 when the blob is stored and readable by the caller, else 404: a client uploads an unchanged bundle once.
    A blob of another project answers 404 as a missing one (the upload then adds the caller's project to it)."""
    digest = check_digest(request.match_info["digest"])
    blobs = services(request).blobs
    projects = await blobs.projects(digest)
    try:
        allow(request, Act.BLOB_READ, Target(projects=projects, agent_projects=_given(request)))
    except Forbidden:
        return web.Response(status=404)
    # `?project=P`: stored *for P* (a deployment of P needs its bundle to be P's, not only readable by the caller).
    wanted = _name(request, "project") if "project" in request.query else None
    stored = await blobs.exists(digest) and (wanted is None or wanted in projects)
    return web.Response(status=200 if stored else 404)


def _given(request: web.Request) -> frozenset[str]:
    """The projects of the work the calling agent's sessions were given (empty for any other token)."""
    from gateway._dispatch import DISPATCHER

    sessions = request.app[DISPATCHER].sessions
    clusters = principal_of(request).clusters
    return frozenset().union(*(sessions[c].projects for c in clusters if c in sessions))


# -- the task registry ------------------------------------------------------------------------------------------


async def deploy(request: web.Request) -> web.Response:
    body = await read_model(request, DeployRequest)
    allow(request, Act.DEPLOY, Target(body.project))
    if any(task.triggers for task in body.tasks):
        # Triggers start runs: deploying them takes a token that may start runs of the project too.
        allow(request, Act.CREATE_RUN, Target(body.project))
    svc = services(request)
    if body.project not in await svc.blobs.projects(body.bundle_digest) or not await svc.blobs.exists(
        body.bundle_digest
    ):
        raise bad_request(
            f"upload the code bundle {body.bundle_digest} for project {body.project} before deploying",
            code="missing_bundle",
        )
    versions, created = await svc.registry.deploy(body)
    svc.metrics.events["deployments"] += int(created)
    return _json(versions, status=201 if created else 200)


def _read_task(request: web.Request, project: str) -> None:
    # An agent reads the specs of the work it was given (its sessions' projects), nothing else.
    allow(request, Act.READ_TASK, Target(project, agent_projects=_given(request)))


async def list_tasks(request: web.Request) -> web.Response:
    project, domain = _scope(request)
    allow(request, Act.READ, Target(project))
    return _json(await services(request).registry.list_latest(project, domain))


async def get_task(request: web.Request) -> web.Response:
    project, domain = _scope(request)
    # A worker resolves the deployed tasks its code calls by name (`remote.Task.get`), in its run's project.
    _read_task(request, project)
    version = request.query.get("version")
    return _json(await services(request).registry.get(project, domain, request.match_info["task"], version))


async def list_task_versions(request: web.Request) -> web.Response:
    project, domain = _scope(request)
    allow(request, Act.READ, Target(project))
    return _json(await services(request).registry.list_versions(project, domain, request.match_info["task"]))


# -- runs and actions ----------------------------------------------------------------------------------------------


def may_read(principal: Principal, project: str, run: str) -> bool:
    """Whether the caller may see `run` (of `project`) at all; one that may not is told it does not exist."""
    try:
        authorize(principal, Act.READ, Target(project, run))
    except Forbidden:
        return False
    return True


async def _resolve_run(request: web.Request) -> RunSummary:
    """The run the path names: a name chosen in `?project=&domain=`, or an identity."""
    return await services(request).runs.resolve(request.match_info["run"], _scope(request))


async def visible_run(request: web.Request) -> RunSummary:
    """The run the path names, if the caller may read it.

    A run of a project the caller cannot read answers 404 exactly as a run that does not exist: a 403 would tell other
    projects which names exist.
    """
    run = await _resolve_run(request)
    if not may_read(principal_of(request), run.project, run.name):
        raise not_found(f"no run named {request.match_info['run']}")
    return run


async def create_run(request: web.Request) -> web.Response:
    body = await read_model(request, RunCreateRequest)
    allow(request, Act.CREATE_RUN, Target(body.project))
    _check_inline(body.inputs)
    svc = services(request)
    run, created = await svc.runs.create_run(body)
    svc.metrics.events["runs_created"] += int(created)
    return _json(run, status=201 if created else 200)


@dataclass(frozen=True)
class RunsQuery:
    """The filters of a runs listing (`GET /api/v1/runs` and the UI's runs stream)."""

    project: str
    domain: str
    phase: Phase | None
    task: str | None
    labels: dict[str, str]
    limit: int

    async def list(self, runs: Runs) -> list[RunSummary]:
        return await runs.list_runs(self.project, self.domain, self.phase, self.task, self.labels, self.limit)


def runs_query(request: web.Request) -> RunsQuery:
    project, domain = _scope(request)
    labels: dict[str, str] = {}
    for label in request.query.getall("label", []):
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise bad_request(f"label filter {label!r} must be key=value")
        labels[key] = value
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= limit <= 1000:
        raise bad_request("limit must be between 1 and 1000")
    return RunsQuery(project, domain, _phase(request), request.query.get("task"), labels, limit)


async def list_runs(request: web.Request) -> web.Response:
    query = runs_query(request)
    allow(request, Act.READ, Target(query.project))
    return _json(await query.list(services(request).runs))


def _phase(request: web.Request) -> Phase | None:
    raw = request.query.get("phase")
    if raw is None:
        return None
    try:
        return Phase(raw)
    except ValueError:
        raise bad_request(f"phase={raw!r} is not one of {', '.join(p.value for p in Phase)}") from None


async def get_run(request: web.Request) -> web.Response:
    return _json(await visible_run(request))


async def abort_run(request: web.Request) -> web.Response:
    body = await read_model(request, AbortRequest)
    run = await visible_run(request)
    allow(request, Act.ABORT_RUN, Target(run.project, run.name))
    return _json(await services(request).runs.abort(run.name, body.reason))


async def list_actions(request: web.Request) -> web.Response:
    run = await visible_run(request)
    actions, _ = await services(request).runs.list_actions(run.name, request.query.get("parent"), _phase(request))
    return _json(actions)


async def get_action(request: web.Request) -> web.Response:
    run = await visible_run(request)
    return _json(await services(request).runs.get_action(run.name, request.match_info["action"]))


async def submit_action(request: web.Request) -> web.Response:
    body = await read_model(request, ActionSubmitRequest)
    run = await visible_run(request)
    allow(request, Act.SUBMIT, Target(run.project, run.name, action=body.parent))
    _check_inline(body.inputs)
    svc = services(request)
    [(action, created)] = await svc.runs.submit_many(run, [body])
    svc.metrics.events["actions_submitted"] += int(created)
    return _json(action, status=201 if created else 200)


async def report_event(request: web.Request) -> web.Response:
    body = await read_model(request, ActionEvent)
    svc = services(request)
    name = request.match_info["action"]
    principal = principal_of(request)
    if body.cluster is not None and body.cluster in principal.clusters:
        # An agent speaks for its own cluster only, and only about attempts placed there (it reads no runs, so the
        # run is looked up without the read check; its refusal is a 403 about the attempt).
        run = await _resolve_run(request)
        current = await svc.runs.get_action(run.name, name)
        agent = Principal(frozenset({f"agent:{body.cluster}"}), frozenset())
        target = Target(run.project, run.name, name, body.attempt, current=current, event_phase=body.phase)
        authorize(agent, Act.AGENT_EVENT, target)
    else:
        # An agent token reads no runs, but its refusal here is about speaking for another cluster: a 403.
        run = await (_resolve_run(request) if principal.clusters else visible_run(request))
        allow(request, Act.REPORT, Target(run.project, run.name, action=name, attempt=body.attempt))
    # Only the attempt's own worker token may put its result in the cache (a client's report never does).
    action = await svc.runs.report(run.name, name, body, from_worker=principal.attempt is not None)
    svc.metrics.events[f"transitions_{body.phase.value}"] += 1
    return _json(action)


async def watch_actions(request: web.Request) -> web.StreamResponse:
    """A WebSocket: the run's (or one parent's) actions as a snapshot, a marker, then every change.

    `?from_revision=R` resumes after a reconnect with the changes from R on; if the store no longer has them, the
    stream starts with a `reset` and a fresh snapshot.
    """
    run = await visible_run(request)
    parent = request.query.get("parent")
    only = request.query.get("action")
    try:
        from_revision = int(request.query.get("from_revision", "0"))
    except ValueError:
        raise bad_request("from_revision must be an integer") from None
    svc = services(request)
    return await serve_watch(request, lambda ws: _stream(ws, svc, run.name, parent, from_revision, only))


async def serve_watch(
    request: web.Request, follow: Callable[[web.WebSocketResponse], Coroutine[Any, Any, None]]
) -> web.WebSocketResponse:
    """Open a watch WebSocket and run `follow` on it until the client goes away or the gateway shuts down."""
    svc = services(request)
    ws = web.WebSocketResponse(heartbeat=15.0)
    await ws.prepare(request)
    svc.watchers.add(ws)
    stream = asyncio.create_task(follow(ws))
    # A stream that ends on its own (its store failing, say) must close the socket: heartbeats alone would keep the
    # client waiting forever for changes that never come.
    stream.add_done_callback(lambda _: _closing.spawn(_end_watch(ws, stream)))
    try:
        async for message in ws:
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
        svc.watchers.discard(ws)
        await ws.close()
    return ws


_closing = Background()


async def _end_watch(ws: web.WebSocketResponse, stream: asyncio.Task[None]) -> None:
    if stream.cancelled() or ws.closed:
        return
    error = stream.exception()
    if error is not None and not isinstance(error, StoreError):
        log.error("a watch stream failed", exc_info=error)
    reason = "the gateway cannot follow its store now; resume from the last revision seen"
    await ws.close(code=CloseCode.STORE_UNAVAILABLE, message=reason.encode())


async def _stream(
    ws: web.WebSocketResponse, svc: Services, run: str, parent: str | None, start: int, only: str | None = None
) -> None:
    def wanted(action: ActionSummary) -> bool:
        return (parent is None or action.parent == parent) and (only is None or action.name == only)

    async def send(kind: str, actions: list[ActionSummary], revision: int) -> None:
        await ws.send_str(WatchMessage(type=kind, actions=actions, revision=revision).model_dump_json())  # type: ignore[arg-type]

    async def snapshot() -> int:
        actions, revision = await svc.runs.list_actions(run, parent)
        actions = [a for a in actions if wanted(a)]
        for i in range(0, len(actions), _SNAPSHOT_CHUNK):
            await send("snapshot", actions[i : i + _SNAPSHOT_CHUNK], revision)
        await send("marker", [], revision)
        return revision + 1

    if start <= 0:
        start = await snapshot()
    while True:
        try:
            async for batch in svc.store.watch(actions_prefix(run), start):
                # Filter on the key before decoding: a watch on one action ignores its run's other changes cheaply.
                suffix = f"/{only}" if only else ""
                changes = [decode_event(e) for e in batch if e.type is EventType.PUT and e.key.endswith(suffix)]
                changes = [a for a in changes if wanted(a)]
                last = batch[-1].mod_revision
                if changes:
                    await send("change", changes, last)
                start = last + 1
            return
        except Compacted:
            await send("reset", [], start)
            start = await snapshot()


async def get_trace(request: web.Request) -> web.Response:
    run = await visible_run(request)
    return _json(RunTrace(run=run.name, spans=await services(request).runs.tracing.read(run.name)))


# -- clusters ---------------------------------------------------------------------------------------------------


ROUTES: list[Route] = [
    Route("PUT", "/api/v1/blobs/{digest}", put_blob, "Upload a blob under the sha256 of its content"),
    Route("GET", "/api/v1/blobs/{digest}", get_blob, "Download a blob"),
    Route("HEAD", "/api/v1/blobs/{digest}", head_blob, "Whether a blob is stored (200) or not (404)"),
    Route(
        "POST",
        "/api/v1/blobs/{digest}/uploads",
        upload_url,
        "A presigned URL to upload a blob straight into the object store, signed with its sha256 (409 for a"
        " directory store); ?parts=N with each part's sha256 in the body: a multipart upload",
        body=PartChecksums,
        answer=BlobTransfer,
    ),
    Route(
        "POST",
        "/api/v1/blobs/{digest}/uploads/{upload}",
        commit_upload,
        "Commit a direct upload (?multipart=ID&parts=N: join its N parts first) and make it the blob",
    ),
    Route(
        "POST",
        "/api/v1/blobs/{digest}/uploads/{upload}/parts",
        resume_upload,
        "Resume a multipart upload (?multipart=ID&parts=N, each part's sha256 in the body): the parts held, and"
        " URLs for the missing ones",
        body=PartChecksums,
        answer=BlobTransfer,
    ),
    Route(
        "GET",
        "/api/v1/blobs/{digest}/url",
        download_url,
        "A presigned URL to download a blob straight from the object store (409 for a directory store)",
        answer=BlobTransfer,
    ),
    Route(
        "POST",
        "/api/v1/deployments",
        deploy,
        "Deploy an environment's tasks at a version",
        DeployRequest,
        TaskVersion,
        many=True,
    ),
    Route(
        "GET", "/api/v1/tasks", list_tasks, "The latest version of every deployed task", None, TaskVersion, many=True
    ),
    Route("GET", "/api/v1/tasks/{task}", get_task, "One task at ?version= (default: latest)", None, TaskVersion),
    Route(
        "GET",
        "/api/v1/tasks/{task}/versions",
        list_task_versions,
        "Every deployed version of a task",
        None,
        TaskVersion,
        many=True,
    ),
    Route(
        "POST", "/api/v1/runs", create_run, "Create a run (idempotent by idempotency_key)", RunCreateRequest, RunSummary
    ),
    Route("GET", "/api/v1/runs", list_runs, "Runs, filtered by ?phase= ?task= ?label=k=v", None, RunSummary, many=True),
    Route("GET", "/api/v1/runs/{run}", get_run, "One run", None, RunSummary),
    Route("POST", "/api/v1/runs/{run}/abort", abort_run, "Abort a run and its actions", AbortRequest, RunSummary),
    Route(
        "GET",
        "/api/v1/runs/{run}/actions",
        list_actions,
        "A run's actions, by ?parent= ?phase=",
        None,
        ActionSummary,
        many=True,
    ),
    Route(
        "POST",
        "/api/v1/runs/{run}/actions",
        submit_action,
        "Submit a child action (idempotent by name)",
        ActionSubmitRequest,
        ActionSummary,
    ),
    Route("GET", "/api/v1/runs/{run}/actions/{action}", get_action, "One action", None, ActionSummary),
    Route(
        "POST",
        "/api/v1/runs/{run}/actions/{action}/events",
        report_event,
        "Report a state change of an action's attempt",
        ActionEvent,
        ActionSummary,
    ),
    Route(
        "GET",
        "/api/v1/runs/{run}/watch",
        watch_actions,
        "WebSocket: snapshot, marker, then changes of a run's actions (?parent= ?from_revision=)",
        None,
        WatchMessage,
    ),
    Route(
        "GET",
        "/api/v1/runs/{run}/trace",
        get_trace,
        "The run's OpenTelemetry spans (gateway, agents, workers), sorted by start",
        None,
        RunTrace,
    ),
]


def timing_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            metrics.observe_request(request.method, name, status, time.perf_counter() - start)

    return middleware


__all__ = ["ROUTES", "SERVICES", "ErrorBody", "Route", "Services", "timing_middleware"]
