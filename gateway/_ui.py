"""The web UI: its pages, its login, and the live streams of runs and clusters it shows.

The pages are plain ES modules and CSS under `gateway/ui/static/`, served as they are (no build step, no CDN, so
the UI works offline). Every page path (`/`, `/runs`, `/runs/{run}`, `/clusters`, `/tasks`, `/login`) answers
the same `index.html`, which routes on the client; pages hold no data, and every datum comes from the JSON API
under `/api/v1` with the same auth as any client.

Browsers cannot put an `Authorization` header on a WebSocket, so the UI holds its bearer token in a session
cookie (HttpOnly: page scripts never see it; SameSite=Strict: other sites cannot ride on it), which the auth
middleware accepts in place of the header. Two ways in:

    POST /ui/session {"token": T}      the login page: a token the user pastes
    GET  /login?code=C                 a one-time link (`POST /api/v1/ui/logins`, admin; `flyte rig up` prints
                                       one): the code is spent on first use, and the session gets a new token
                                       with the minting token's scopes

An action's `flyte.report` page is served sandboxed for the action's Report tab (`gateway._reports` says how).

Live streams (WebSockets, fed by the store's watch; the run watch of `_api.py` covers one run's actions):

    GET /api/v1/watch/runs?project&domain&phase&task&label&limit   run summaries
    GET /api/v1/watch/clusters                                      cluster records

Each sends `snapshot` messages, a `marker`, then a `change` per store change (and `reset` plus a fresh snapshot
if the store compacted the history it was following). The runs snapshot is filtered on the server; changes cover
every run of the project and domain, and the page applies its filters to them, so a run that leaves the filter
(its phase changed) leaves the page too.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from flyte._wire import ClusterRecord, LoginLink, LoginRequest, RecordsMessage, RunSummary
from gateway._api import read_model, runs_query, serve_watch, services
from gateway._auth import (
    SESSION_COOKIE,
    Authenticator,
    Principal,
    TokenRecord,
    create_token,
    principal_of,
    require_same_origin,
    token_id,
    token_key,
)
from gateway._dispatch import DISPATCHER
from gateway._keys import ACTIONS, CLUSTERS, CORDONS, RUNS, SESSIONS, UI_LOGINS, ui_login_key
from gateway._otlp import AUTHENTICATOR
from gateway._reports import get_report
from gateway.store import Compacted, Compare, Delete, EventType, Store

STATIC = Path(__file__).parent / "ui" / "static"
PAGES = ("/", "/runs", "/runs/{run}", "/clusters", "/tasks", "/tasks/{task}", "/login")
LOGIN_TTL = 3600.0
"""A one-time login link works for an hour."""
SESSION_SECONDS = 7 * 24 * 3600
SESSION_DESCRIPTION = "UI session"
_SNAPSHOT_CHUNK = 500
_SECURITY_HEADERS = {
    # Everything the UI loads or connects to is this gateway; nothing may frame it.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

UI_AUTH = web.AppKey("ui_authenticator", Authenticator)


def add_ui_routes(app: web.Application) -> None:
    # The API's own: one cache of tokens, so a revocation holds for the UI's logins as it does for the API.
    app[UI_AUTH] = app[AUTHENTICATOR]
    for path in PAGES:
        app.router.add_get(path, _page)
    # Before the static files: their prefix would take these paths too.
    app.router.add_get("/ui/session", _session)
    app.router.add_post("/ui/session", _login)
    app.router.add_post("/ui/logout", _logout)
    app.router.add_static("/ui/", STATIC)
    app.router.add_post("/api/v1/ui/logins", _make_login_link)
    app.router.add_get("/api/v1/watch/runs", _watch_runs)
    app.router.add_get("/api/v1/watch/clusters", _watch_clusters)
    app.router.add_get("/api/v1/runs/{run}/actions/{action}/report", get_report)


async def _page(request: web.Request) -> web.StreamResponse:
    if request.path == "/login" and "code" in request.query:
        return await _spend_login_code(request)
    return web.FileResponse(STATIC / "index.html", headers=_SECURITY_HEADERS)


# -- logging in --------------------------------------------------------------------------------------------------


class _LoginCode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[str]
    projects: list[str]
    expires_at: float


def _with_session(request: web.Request, response: web.StreamResponse, token: str) -> web.StreamResponse:
    # Secure where the gateway is served over TLS: the cookie is the token, and must not travel in clear.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
    )
    return response


async def _login(request: web.Request) -> web.StreamResponse:
    # Another site must not log this browser in (into its own token) any more than use its session.
    require_same_origin(request)
    body = await read_model(request, LoginRequest)
    principal = await request.app[UI_AUTH].principal(f"Bearer {body.token}")
    return _with_session(request, web.json_response({"scopes": sorted(principal.scopes)}), body.token)


async def _session(request: web.Request) -> web.StreamResponse:
    """Who the session cookie logs in as: 401 when there is none or its token is no longer valid."""
    token = request.cookies.get(SESSION_COOKIE)
    principal = await request.app[UI_AUTH].principal(f"Bearer {token}" if token else None)
    return web.json_response({"scopes": sorted(principal.scopes), "projects": sorted(principal.projects)})


async def _logout(request: web.Request) -> web.StreamResponse:
    require_same_origin(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        store = services(request).store
        kv = await store.get(token_key(token))
        # A session minted by a login link is the UI's alone: revoke it. A pasted token belongs to its owner.
        if kv is not None and TokenRecord.model_validate_json(kv.value).description == SESSION_DESCRIPTION:
            await store.delete(token_key(token))
            request.app[UI_AUTH].forget(token_id(token))
    response = web.json_response({"logged_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def create_login_code(store: Store, principal: Principal, ttl: float = LOGIN_TTL) -> tuple[str, float]:
    """A one-time code for a browser session with `principal`'s scopes; only its sha256 is stored."""
    now = time.time()
    # Links nobody opened would pile up: minting a new one clears the expired ones.
    unused, _ = await store.range(UI_LOGINS)
    for kv in unused:
        if _LoginCode.model_validate_json(kv.value).expires_at < now:
            await store.delete(kv.key)
    code = secrets.token_urlsafe(24)
    record = _LoginCode(scopes=sorted(principal.scopes), projects=sorted(principal.projects), expires_at=now + ttl)
    await store.put(ui_login_key(hashlib.sha256(code.encode()).hexdigest()), record.model_dump_json().encode())
    return code, record.expires_at


async def _make_login_link(request: web.Request) -> web.Response:
    principal = principal_of(request)
    principal.require("admin")
    code, expires_at = await create_login_code(services(request).store, principal)
    return web.json_response(LoginLink(url=f"/login?code={code}", expires_at=expires_at).model_dump())


async def _spend_login_code(request: web.Request) -> web.StreamResponse:
    store = services(request).store
    key = ui_login_key(hashlib.sha256(request.query["code"].encode()).hexdigest())
    kv = await store.get(key)
    # Deleting under a compare on the read revision spends the code exactly once, even if two tabs race.
    spent = kv is not None and (await store.txn([Compare(key, kv.mod_revision)], [Delete(key)])).succeeded
    if kv is None or not spent:
        raise web.HTTPSeeOther("/login?error=used")
    record = _LoginCode.model_validate_json(kv.value)
    if record.expires_at < time.time():
        raise web.HTTPSeeOther("/login?error=expired")
    token = await create_token(store, record.scopes, record.projects, SESSION_DESCRIPTION)
    return _with_session(request, web.Response(status=303, headers={"Location": "/runs"}), token)


# -- live streams ------------------------------------------------------------------------------------------------


Send = Callable[[RecordsMessage], Awaitable[None]]


async def _serve_stream(
    request: web.Request, follow: Callable[[Send], Coroutine[Any, Any, None]]
) -> web.WebSocketResponse:
    def on(ws: web.WebSocketResponse) -> Coroutine[Any, Any, None]:
        async def send(message: RecordsMessage) -> None:
            await ws.send_str(message.model_dump_json())

        return follow(send)

    return await serve_watch(request, on)


async def _watch_runs(request: web.Request) -> web.StreamResponse:
    query = runs_query(request)
    principal_of(request).require_reader(query.project)
    svc = services(request)

    async def start(send: Send) -> int:
        # The revision is read before the listing: a change racing it is sent again, never lost.
        revision = await svc.store.revision()
        runs = await query.list(svc.runs)
        for i in range(0, len(runs), _SNAPSHOT_CHUNK):
            await send(RecordsMessage(type="snapshot", runs=runs[i : i + _SNAPSHOT_CHUNK], revision=revision))
        await send(RecordsMessage(type="marker", revision=revision))
        return revision + 1

    async def follow(send: Send) -> None:
        revision = await start(send)
        while True:
            try:
                async for batch in svc.store.watch(RUNS, revision):
                    runs = [RunSummary.model_validate_json(e.value) for e in batch if e.type is EventType.PUT]
                    runs = [r for r in runs if (r.project, r.domain) == (query.project, query.domain)]
                    removed = [e.key.removeprefix(RUNS) for e in batch if e.type is EventType.DELETE]
                    if runs or removed:
                        await send(
                            RecordsMessage(type="change", runs=runs, removed=removed, revision=batch[-1].mod_revision)
                        )
                    revision = batch[-1].mod_revision + 1
                return
            except Compacted:
                await send(RecordsMessage(type="reset", revision=revision))
                revision = await start(send)

    return await _serve_stream(request, follow)


CLUSTER_UPDATES_EVERY = 0.5
"""At most two cluster updates a second: under load every action's change moves some cluster's free capacity."""
_SETTLE = 0.05
"""The dispatcher updates its own view right after its store write: let it, before reading that view."""


async def _watch_clusters(request: web.Request) -> web.StreamResponse:
    """Every cluster as placement sees it (connection, free room, warm slots, cordon), again after each change.

    Free room and warm slots live in the dispatcher, not the store: they move when actions are placed and end, so
    a change of any action, cluster record, cordon or agent session sends every cluster's view again (clusters are
    few). Warm slots that only a heartbeat changed show with the next such change.
    """
    principal_of(request).require_reader(None)
    svc = services(request)
    dispatcher = request.app[DISPATCHER]
    changed = asyncio.Event()

    async def views() -> tuple[list[ClusterRecord], int]:
        kvs, revision = await svc.store.range(CLUSTERS)
        return [dispatcher.cluster_view(ClusterRecord.model_validate_json(kv.value)) for kv in kvs], revision

    async def watch(prefix: str, revision: int) -> None:
        while True:
            try:
                async for _ in svc.store.watch(prefix, revision):
                    changed.set()
                return
            except Compacted:
                # Every update sends every view whole: following on from now misses nothing.
                revision = 0
                changed.set()

    async def follow(send: Send) -> None:
        clusters, revision = await views()
        await send(RecordsMessage(type="snapshot", clusters=clusters, revision=revision))
        await send(RecordsMessage(type="marker", revision=revision))
        prefixes = (CLUSTERS, ACTIONS, CORDONS, SESSIONS)
        watches = [asyncio.create_task(watch(prefix, revision + 1)) for prefix in prefixes]
        try:
            while True:
                await changed.wait()
                await asyncio.sleep(_SETTLE)
                changed.clear()
                clusters, revision = await views()
                await send(RecordsMessage(type="change", clusters=clusters, revision=revision))
                await asyncio.sleep(CLUSTER_UPDATES_EVERY)
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    return await _serve_stream(request, follow)
