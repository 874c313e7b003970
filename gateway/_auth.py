"""Bearer tokens with scopes.

A token is shown once, when it is made; the store keeps only its sha256, under `/flyte/tokens/`. Scopes:

    admin            everything
    deploy           the task registry, and reading
    run              creating, reading and aborting runs
    agent:CLUSTER    what the agent of that cluster does (register, heartbeat, report)
    worker:RUN       what a worker of that run does: submit children, report, read the run, blobs

A token may be limited to some projects; using it for another project is a 403, like a missing scope. A missing
or unknown token is a 401.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway._errors import forbidden, unauthorized
from gateway.store import Store

TOKEN_PREFIX = "/flyte/tokens/"
_SCOPE = re.compile(r"^(admin|deploy|run|agent:[a-z0-9][a-z0-9_-]{0,62}|worker:[a-z0-9][a-z0-9-]{0,62})$")
_CACHE_SECONDS = 5.0
"""How long a looked-up token is trusted before the store is asked again (revocation delay)."""


class TokenRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[str] = Field(min_length=1)
    projects: list[str] = Field(default_factory=list)
    """Empty: every project."""
    description: str = ""
    created_at: float
    expires_at: float | None = None
    """After this (seconds since the epoch) the token is refused; None: it does not expire."""


def validate_scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise ValueError(f"scope {scope!r} is not one of admin, deploy, run, agent:CLUSTER, worker:RUN")
    return scope


def token_key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    store: Store,
    scopes: list[str],
    projects: list[str] | None = None,
    description: str = "",
    expires_in: float | None = None,
) -> str:
    """Make a token, store its hash, and return it: the only time it is visible."""
    now = time.time()
    record = TokenRecord(
        scopes=[validate_scope(s) for s in scopes],
        projects=projects or [],
        description=description,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    token = "fft_" + secrets.token_urlsafe(32)
    await store.put(token_key(token), record.model_dump_json().encode())
    return token


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    scopes: frozenset[str]
    projects: frozenset[str]

    def allows(self, scope: str, project: str | None = None) -> bool:
        if "admin" in self.scopes:
            return True
        if scope not in self.scopes:
            return False
        return project is None or not self.projects or project in self.projects

    def require(self, *any_of: str, project: str | None = None) -> None:
        """Refuse (403) unless the caller holds one of these scopes for this project."""
        if any(self.allows(scope, project) for scope in any_of):
            return
        held = ", ".join(sorted(self.scopes)) or "none"
        where = f" for project {project!r}" if project else ""
        raise forbidden(f"this needs scope {' or '.join(any_of)}{where}; the token has {held}")

    def require_reader(self, project: str | None, run: str | None = None) -> None:
        scopes = ["admin", "deploy", "run"]
        if run is not None:
            scopes.append(f"worker:{run}")
        scopes += [s for s in self.scopes if s.startswith("agent:")]
        self.require(*scopes, project=project)


class Authenticator:
    """Looks tokens up in the store, remembering answers for a few seconds."""

    def __init__(self, store: Store):
        self._store = store
        self._cache: dict[str, tuple[float, Principal | None, float | None]] = {}

    async def principal(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise unauthorized("send a bearer token: Authorization: Bearer <token>")
        token = header.removeprefix("Bearer ").strip()
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            _, found, expires_at = cached
        else:
            kv = await self._store.get(token_key(token))
            found, expires_at = None, None
            if kv is not None:
                record = TokenRecord.model_validate_json(kv.value)
                found = Principal(frozenset(record.scopes), frozenset(record.projects))
                expires_at = record.expires_at
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + _CACHE_SECONDS, found, expires_at)
        if found is None:
            raise unauthorized("the token is not valid")
        if expires_at is not None and expires_at <= time.time():
            raise unauthorized("the token has expired")
        return found


PRINCIPAL = web.AppKey("principal", Principal)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"})
SESSION_COOKIE = "flyte_session"
"""The web UI's bearer token (set by its login, HttpOnly, SameSite=Strict): browsers cannot put an
`Authorization` header on a WebSocket, so the UI's requests carry the token in this cookie instead."""


def require_same_origin(request: web.Request) -> None:
    """Refuse a browser request another site's page made (browsers always send `Origin` on those that matter)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise forbidden(f"the UI session does not accept requests from origin {origin}")


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None or SESSION_COOKIE not in request.cookies:
        return header
    # A cookie rides along on requests other sites make; SameSite=Strict stops browsers from sending it, and this
    # refuses what an old browser might still send (a WebSocket handshake always carries its Origin).
    require_same_origin(request)
    return "Bearer " + request.cookies[SESSION_COOKIE]


def auth_middleware(authenticator: Authenticator) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or not request.path.startswith("/api/"):
            # Public: health, metrics, the OpenAPI document, and pages that hold no data (the UI logs in itself).
            return await handler(request)
        request["principal"] = await authenticator.principal(_bearer(request))
        return await handler(request)

    return middleware


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request["principal"]
    return principal
