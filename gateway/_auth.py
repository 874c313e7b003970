"""Bearer tokens with scopes.

A token is shown once, when it is made; the store keeps only its sha256, under `/flyte/tokens/`. Scopes:

    admin            everything
    deploy           the task registry, and reading
    run              creating, reading and aborting runs
    agent:CLUSTER    what the agent of that cluster does (register, heartbeat, report)
    worker:RUN       what a worker of that run does: submit children, report, read the run, blobs

A token may be limited to some projects; using it for another project is a 403, like a missing scope. A missing,
unknown, expired or revoked token is a 401. A stored token may carry an expiry, is listed by its id (the first 16 hex
digits of its sha256) and is revoked by deleting its record; a revocation holds at once on the gateway that made it
(and within `_CACHE_SECONDS` on other replicas), also for sockets already open, which check their token on every
message (`Authenticator.check_current`).

Worker tokens are not stored: the dispatcher signs one per attempt (`ffw_` + the attempt + an HMAC under a key kept
in the store), and it is valid only while that attempt is the action's current one, and for `WORKER_GRACE` seconds
after it ended (its final report may still be on its way). What each token may do is `gateway._authz`'s table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from flyte._env import env_float
from flyte._wire import ActionSummary, Phase
from gateway._decoded import DecodedActions
from gateway._errors import forbidden, unauthorized
from gateway._keys import TOKENS, WORKER_TOKEN_KEY, action_key, token_record_key
from gateway.store import Compare, Put, Store

_SCOPE = re.compile(r"^(admin|deploy|run|agent:[a-z0-9][a-z0-9_-]{0,62}|worker:[a-z0-9][a-z0-9-]{0,62})$")
_CACHE_SECONDS = 5.0
"""How long a looked-up token is trusted before the store is asked again (the revocation delay of other replicas)."""
_TOKEN_ID = re.compile(r"^[0-9a-f]{16}$")


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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str:
    """What a token is listed and revoked by: not a secret (it is a prefix of the hash the store keeps)."""
    return _token_hash(token)[:16]


def token_key(token: str) -> str:
    return token_record_key(_token_hash(token))


async def create_token(
    store: Store,
    scopes: list[str],
    projects: list[str] | None = None,
    description: str = "",
    expires_in: float | None = None,
) -> str:
    """Make a token, store its hash, and return it: the only time it is visible."""
    token, _ = await issue_token(store, scopes, projects, description, expires_in)
    return token


async def issue_token(
    store: Store,
    scopes: list[str],
    projects: list[str] | None = None,
    description: str = "",
    expires_in: float | None = None,
) -> tuple[str, TokenRecord]:
    """`create_token`, also answering the record stored for it."""
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
    return token, record


async def stored_tokens(store: Store) -> list[tuple[str, TokenRecord]]:
    """Every stored token, by id, oldest first."""
    kvs, _ = await store.range(TOKENS)
    found = [(kv.key.removeprefix(TOKENS)[:16], TokenRecord.model_validate_json(kv.value)) for kv in kvs]
    return sorted(found, key=lambda item: item[1].created_at)


async def revoke_token(store: Store, token_id: str) -> TokenRecord | None:
    """Delete the token with this id; its record, or None if there is none (or the id is not one)."""
    if not _TOKEN_ID.match(token_id):
        return None
    kvs, _ = await store.range(TOKENS + token_id)
    if len(kvs) != 1:
        # Two tokens sharing 64 bits of their hashes would need 2^32 tokens; refuse rather than guess.
        return None
    await store.delete(kvs[0].key)
    return TokenRecord.model_validate_json(kvs[0].value)


WORKER_GRACE = env_float("FLYTE_WORKER_TOKEN_GRACE", 30.0, above=False)
"""Seconds a worker token outlives its attempt: its final report and last checkpoints may still be in flight."""
_WORKER_PREFIX = "ffw_"


@dataclass(frozen=True)
class AttemptRef:
    """The one attempt a worker token acts for."""

    project: str
    run: str
    action: str
    attempt: int


def attempt_over_since(action: ActionSummary, attempt: int) -> float | None:
    """When `attempt` of `action` stopped being current (None: it still is).

    An attempt is over once the action ended, went back to the queue, or moved on to a later attempt; one that has
    not been placed yet never began (0).
    """
    if action.attempts < attempt:
        return 0.0
    if action.attempts == attempt and action.phase in (Phase.PLACED, Phase.RUNNING):
        return None
    return action.ended_at or action.updated_at or 0.0


_MINTED_KEPT = 65_536
"""Worker tokens a replica remembers minting (the attempts in flight of a wide fan-out, a few MB)."""


class WorkerTokens:
    """Signs and checks per-attempt worker tokens; the key is made once and kept in the store (every gateway
    replica shares it)."""

    def __init__(self, store: Store):
        self._store = store
        self._key: bytes | None = None
        self._keyed: hmac.HMAC | None = None
        """An HMAC with the key already absorbed: each token copies it (a new one per token was most of a mint)."""
        self._minted: dict[str, AttemptRef] = {}
        """Tokens this replica minted lately: one shown back (a worker's report) is known good without checking
        its signature again. Oldest forgotten first; a forgotten one is verified as any other."""
        self._lock = asyncio.Lock()

    async def _signing_key(self) -> bytes:
        if self._key is not None:
            return self._key  # set once, never changed: every mint and verify after the first
        async with self._lock:
            while self._key is None:
                kv = await self._store.get(WORKER_TOKEN_KEY)
                if kv is not None:
                    self._key = kv.value
                    break
                fresh = secrets.token_bytes(32)
                if (await self._store.txn([Compare(WORKER_TOKEN_KEY, 0)], [Put(WORKER_TOKEN_KEY, fresh)])).succeeded:
                    self._key = fresh
            return self._key

    async def mint(self, ref: AttemptRef) -> str:
        payload = json.dumps([ref.project, ref.run, ref.action, ref.attempt]).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        token = f"{_WORKER_PREFIX}{body}.{await self._sign(body)}"
        if len(self._minted) >= _MINTED_KEPT:
            del self._minted[next(iter(self._minted))]
        self._minted[token] = ref
        return token

    async def _sign(self, body: str) -> str:
        keyed = self._keyed
        if keyed is None:
            keyed = self._keyed = hmac.new(await self._signing_key(), digestmod=hashlib.sha256)
        mac = keyed.copy()
        mac.update(body.encode())
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    async def verify(self, token: str) -> AttemptRef | None:
        """The attempt a well-signed worker token names; None for anything else."""
        minted = self._minted.get(token)
        if minted is not None:
            return minted
        body, _, signature = token.removeprefix(_WORKER_PREFIX).partition(".")
        if not hmac.compare_digest(signature.encode(), (await self._sign(body)).encode()):
            return None
        try:
            project, run, action, attempt = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return AttemptRef(str(project), str(run), str(action), int(attempt))
        except (ValueError, TypeError, binascii.Error):
            return None

    @staticmethod
    def is_worker_token(token: str) -> bool:
        return token.startswith(_WORKER_PREFIX)


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    scopes: frozenset[str]
    projects: frozenset[str]
    attempt: AttemptRef | None = None
    """For a worker token: the one attempt it acts for."""
    token_id: str = ""
    """Names the token (a prefix of its hash) for limits per token, such as concurrent uploads."""
    token_hash: str = ""
    """A stored token's sha256 (its record's key): what a long-lived socket checks again on every message."""

    @property
    def clusters(self) -> frozenset[str]:
        """The clusters whose agent this token is."""
        return frozenset(s.removeprefix("agent:") for s in self.scopes if s.startswith("agent:"))

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
        # Agents read only what their assignments need (`gateway._authz`), never runs or placement.
        scopes = ["admin", "deploy", "run"]
        if run is not None:
            scopes.append(f"worker:{run}")
        self.require(*scopes, project=project)


class Authenticator:
    """Looks tokens up in the store, remembering answers for a few seconds."""

    def __init__(self, store: Store, workers: WorkerTokens | None = None, decoded: DecodedActions | None = None):
        self._store = store
        self.workers = workers or WorkerTokens(store)
        self._decoded = decoded or DecodedActions()
        """Action records by revision, shared with `Runs`: a worker token's attempt is one the gateway just wrote."""
        self._cache: dict[str, tuple[float, Principal | None, float | None]] = {}
        """By token hash: until when the answer holds, the principal (None: no such token), its expiry."""

    async def principal(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise unauthorized("send a bearer token: Authorization: Bearer <token>")
        principal = await self.identify(header.removeprefix("Bearer ").strip())
        if principal.attempt is not None:
            await self.check_current(principal)
        return principal

    async def identify(self, token: str) -> Principal:
        """Whose token this is: a stored one that is not revoked or expired, or a well-signed worker token. Whether
        a worker token's attempt is still current is `check_current`'s, which a worker socket asks for every
        message anyway (with the action it reads for that message)."""
        if WorkerTokens.is_worker_token(token):
            ref = await self.workers.verify(token)
            if ref is None:
                raise unauthorized("the token is not valid")
            return Principal(frozenset({f"worker:{ref.run}"}), frozenset({ref.project}), ref, token_id(token))
        digest = _token_hash(token)
        found = await self._stored(digest)
        return dataclasses.replace(found, token_id=digest[:16], token_hash=digest)

    async def _stored(self, digest: str) -> Principal:
        """The principal of the stored token with this hash; 401 if there is none, or it has expired."""
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            _, found, expires_at = cached
        else:
            kv = await self._store.get(token_record_key(digest))
            found, expires_at = None, None
            if kv is not None:
                record = TokenRecord.model_validate_json(kv.value)
                found = Principal(frozenset(record.scopes), frozenset(record.projects))
                expires_at = record.expires_at
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + _CACHE_SECONDS, found, expires_at)
        if found is None:
            raise unauthorized("the token is not valid")
        if expires_at is not None and expires_at <= time.time():
            raise unauthorized("the token has expired")
        return found

    def forget(self, token_id: str) -> None:
        """Drop what is remembered of a token (it was just revoked): its next use asks the store."""
        for digest in [d for d in self._cache if d.startswith(token_id)]:
            del self._cache[digest]

    async def check_current(self, principal: Principal, action: ActionSummary | None = None) -> None:
        """Refuse (401) a token that is no longer good: a stored one revoked or expired since it was first shown, a
        worker token whose attempt ended more than `WORKER_GRACE` seconds ago.

        Long-lived sockets call this for every message, since they authenticated only once, when they opened.
        """
        if principal.token_hash:
            await self._stored(principal.token_hash)
            return
        ref = principal.attempt
        if ref is None:
            return
        if action is None or action.run != ref.run or action.name != ref.action:
            kv = await self._store.get(action_key(ref.run, ref.action))
            if kv is None:
                raise unauthorized("the token's attempt does not exist")
            action = self._decoded.decode(kv.key, kv.value, kv.mod_revision)
        since = attempt_over_since(action, ref.attempt)
        if since is not None and since + WORKER_GRACE <= time.time():
            raise unauthorized(f"the token has expired: attempt {ref.attempt} of {ref.action} has ended")


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
