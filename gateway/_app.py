"""The gateway's aiohttp application: routes, middlewares (timing, errors, auth), health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from pathlib import Path

from aiohttp import WSCloseCode, web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import flyte
from flyte._env import env_float
from gateway._api import SERVICES, Services, timing_middleware
from gateway._auth import Authenticator, auth_middleware
from gateway._blob_stores import ClusterBlobStores
from gateway._blobs import BlobStore, LocalBlobStore
from gateway._connections import agent_connect, get_logs, worker_connect
from gateway._dispatch import DISPATCHER, Dispatcher
from gateway._errors import error_middleware
from gateway._event_acks import EVENT_ACKS, EventAcks
from gateway._leader import Election, Lead
from gateway._metrics import Metrics
from gateway._notify import NOTIFIER, SmtpSettings, add_notifier
from gateway._openapi import openapi_document
from gateway._otlp import AUTHENTICATOR, receive_traces
from gateway._registry import Registry
from gateway._retention import Retention, retain_forever
from gateway._routes import ALL_ROUTES
from gateway._runs import Runs
from gateway._secrets import SECRET_KEY
from gateway._tracing import TRACING, GatewayTracing
from gateway._triggers_api import SCHEDULER, add_scheduler
from gateway._ui import add_ui_routes
from gateway.store import Store, StoreError

log = logging.getLogger("flyte.gateway")

MAX_BODY = 256 * 1024 * 1024
"""The largest request body (a blob upload); JSON bodies have a smaller limit of their own."""


def create_app(
    store: Store,
    blobs_dir: Path,
    blobs: BlobStore | None = None,
    secret_key: AESGCM | None = None,
    retention: Retention | None = None,
    history_kept: int | None = None,
    replica: str | None = None,
    smtp: SmtpSettings | None = None,
) -> web.Application:
    metrics = Metrics()
    registry = Registry(store)
    tracing = GatewayTracing(store)
    runs = Runs(store, registry, tracing)
    authenticator = Authenticator(store, decoded=runs.decoded)
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[timing_middleware(metrics), error_middleware, auth_middleware(authenticator)],
    )
    if secret_key is not None:
        app[SECRET_KEY] = secret_key
    app[TRACING] = tracing
    app[SERVICES] = Services(
        store=store,
        registry=registry,
        runs=runs,
        blobs=ClusterBlobStores(blobs or LocalBlobStore(blobs_dir, store), store),
        metrics=metrics,
        watchers=set(),
        links=set(),
    )
    for route in ALL_ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app[DISPATCHER] = Dispatcher(store, app[SERVICES].runs, authenticator.workers, events=metrics.events)
    app[EVENT_ACKS] = EventAcks()
    add_scheduler(app)
    add_notifier(app, store, smtp)
    app[RETENTION] = retention or Retention()
    app[HISTORY] = HISTORY_KEPT if history_kept is None else history_kept
    app[ELECTION] = Election(store, replica or default_replica_name(), _leader_duties(app), ttl=LEADER_TTL)
    app.router.add_get("/api/v1/agents/connect", agent_connect)
    app.router.add_get("/api/v1/workers/connect", worker_connect)
    app.router.add_get("/api/v1/runs/{run}/actions/{action}/logs", get_logs)
    # OTLP/HTTP's standard path, so any OpenTelemetry exporter pointed at the gateway delivers here.
    app[AUTHENTICATOR] = authenticator
    app.router.add_post("/v1/traces", receive_traces)
    add_ui_routes(app)
    app.on_startup.append(_start_dispatcher)
    app.on_cleanup.append(_stop_dispatcher)
    app.on_cleanup.append(_close_runs)
    app.on_cleanup.append(_close_tracing)
    document = openapi_document(flyte.__version__)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_shutdown.append(_close_sockets)
    return app


def default_replica_name() -> str:
    """This host's name and a random suffix: unique among replicas, and a restarted process is a new one."""
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


HISTORY_KEPT = 100_000
"""Store revisions of history kept for watches to resume from; older history is compacted away."""
COMPACT_EVERY = 60.0
RETENTION = web.AppKey("retention", Retention)
HISTORY = web.AppKey("history_kept", int)
ELECTION = web.AppKey("election", Election)
CAMPAIGN = web.AppKey("campaign", asyncio.Task[None])
LEADER_TTL = env_float("FLYTE_LEADER_TTL", 10.0)
"""Seconds a leader's lease lasts without renewal: a killed leader's duties move within this (Armada uses 15 s)."""


async def _start_dispatcher(app: web.Application) -> None:
    await app[DISPATCHER].start()
    app[CAMPAIGN] = campaign = asyncio.create_task(app[ELECTION].run(), name="leader-election")
    campaign.add_done_callback(_said_if_failed)


def _said_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # A bug, not an outage (those are retried inside): this replica stops leading and says why, loudly.
        log.error("leader election stopped on a bug; this replica no longer leads", exc_info=task.exception())


async def _stop_dispatcher(app: web.Application) -> None:
    campaign = app.get(CAMPAIGN)
    if campaign is not None:
        # Cancelling resigns: another replica leads at once instead of after a lease TTL.
        campaign.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await campaign
    await app[DISPATCHER].stop()


def _leader_duties(app: web.Application) -> Lead:
    """The work one replica does for all of them, while it leads: placement (and moving lost clusters' work), the
    trigger scheduler, the notifier, compacting the store's history and retention."""

    async def lead(term: int) -> None:
        store = app[SERVICES].store
        election = app[ELECTION]
        await app[SCHEDULER].start()
        await app[NOTIFIER].start()
        try:
            async with asyncio.TaskGroup() as duties:
                duties.create_task(app[DISPATCHER].lead(election.fence), name="placement")
                duties.create_task(_compact_forever(store, app[HISTORY]), name="compaction")
                retention = app[RETENTION]
                if retention.enabled:
                    duties.create_task(retain_forever(store, retention, app[SERVICES].blobs), name="retention")
        finally:
            await app[NOTIFIER].stop()
            await app[SCHEDULER].stop()

    return lead


async def _compact_forever(store: Store, kept: int) -> None:
    """Keep the store's history bounded, as etcd's auto-compaction would (the embedded store has none).

    A watch that falls behind the kept history gets a `reset` and a fresh snapshot, so nothing is missed.
    """
    compacted = 0
    while True:
        await asyncio.sleep(COMPACT_EVERY)
        try:
            compacted = await compact_once(store, compacted, kept)
        except StoreError as error:
            log.warning("compaction skipped: %s", error)


async def compact_once(store: Store, compacted: int, kept: int) -> int:
    """Compact all but the last `kept` revisions if that moves the mark; returns the new mark."""
    revision = await store.revision()
    if revision - kept > compacted:
        compacted = revision - kept
        await store.compact(compacted)
    return compacted


async def _close_runs(app: web.Application) -> None:
    await app[SERVICES].runs.close()


async def _close_tracing(app: web.Application) -> None:
    await app[TRACING].close()


async def _healthz(request: web.Request) -> web.Response:
    failure = request.app[DISPATCHER].failure
    if failure is not None:
        # A dispatcher loop stopped on a bug: nothing is placed until the gateway restarts, so say so to whatever
        # supervises it (a liveness probe, an operator) instead of looking healthy.
        reason = f"the dispatcher stopped: {type(failure).__name__}: {failure}"
        return web.json_response({"status": "failed", "reason": reason}, status=500)
    return web.json_response({"status": "ok"})


async def _store_revision(request: web.Request) -> int | None:
    try:
        return await request.app[SERVICES].store.revision()
    except StoreError:
        return None


async def _readyz(request: web.Request) -> web.Response:
    revision = await _store_revision(request)
    election = request.app[ELECTION]
    replica = {"replica": election.replica, "leading": election.leading}
    if revision is not None:
        return web.json_response({"ready": True, "revision": revision, **replica})
    return web.json_response({"ready": False, "reason": "the state store is unreachable", **replica}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    rooms = request.app[DISPATCHER].rooms()
    text = svc.metrics.render(
        await _store_revision(request) is not None, len(svc.watchers), rooms, svc.blobs.checked_bytes
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _close_sockets(app: web.Application) -> None:
    svc = app[SERVICES]
    sockets = [*svc.watchers, *svc.links]
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down") for ws in sockets),
        return_exceptions=True,
    )
