"""A worker's one connection to the gateway: batched child submissions, child watches, traces, the result.

Submissions made in the same turn of the event loop travel as one message (a fan-out of 1,000 children is a few
messages, not 1,000 requests). A parent's children are watched once; each awaited child is a future resolved by
the watch. After a dropped connection the link reconnects with capped backoff, watches again (the snapshot
answers whatever finished meanwhile) and resends what was unanswered: submissions are idempotent by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import urllib.parse
from collections import defaultdict
from typing import TypeVar

import aiohttp
import pydantic

from ._background import Background
from ._replicas import Replicas
from ._retrying import RetryDelay
from ._wire import (
    ActionEvent,
    ActionSubmitRequest,
    ActionSummary,
    ConditionCreate,
    ConditionRecord,
    GatewayReply,
    SuspendAnswer,
    SuspendRequest,
    WireTrace,
    WorkerReport,
    WorkerSubmit,
    WorkerTrace,
    WorkerTraces,
    WorkerWatch,
)

log = logging.getLogger("flyte.worker")
M = TypeVar("M", bound=pydantic.BaseModel)

_MAX_BATCH = 500
STORE_UNAVAILABLE = "store_unavailable"
"""The error code of a request the gateway could not serve without its store: worth sending again."""
_RETRY_FIRST = 0.1
_RETRY_MAX = 5.0
CONDITION_POLL = 50.0
"""Seconds one long poll of a waiting condition is held by the gateway before the worker asks again."""


class LinkError(Exception):
    """The gateway refused a request on the worker connection."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class WorkerLink:
    def __init__(self, endpoint: str, token: str, run: str, session: aiohttp.ClientSession | None = None):
        """`session`: a pool worker's, shared by the links of its attempts (each link says its own token), so an
        attempt does not pay for a connection pool of its own; a link without one makes its own and closes it."""
        self.replicas = Replicas(endpoint)
        """Every gateway replica (FLYTE_ENDPOINT may list several): a lost connection or call moves to the next."""
        self.run = run
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session
        self._owns_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[GatewayReply], pydantic.BaseModel]] = {}
        self._to_submit: list[tuple[ActionSubmitRequest, asyncio.Future[ActionSummary]]] = []
        self._flush_scheduled = False
        self._watched: set[str] = set()
        self._children: dict[str, ActionSummary] = {}
        self._waiters: dict[str, list[asyncio.Future[ActionSummary]]] = defaultdict(list)
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._background = Background()

    @property
    def endpoint(self) -> str:
        return self.replicas.current

    @property
    def url(self) -> str:
        return self.endpoint + "/api/v1/workers/connect"

    def _next_endpoint(self) -> None:
        self.replicas.fail_over(self.endpoint)

    async def connect(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self._open()
        self._reader = asyncio.create_task(self._read_forever())

    async def _open(self) -> None:
        assert self._session is not None
        retry = RetryDelay(0.05, 5.0)
        while True:
            try:
                self._ws = await self._session.ws_connect(
                    self.url, headers=self._headers, heartbeat=15.0, max_msg_size=64 * 1024 * 1024
                )
                break
            except aiohttp.ClientError as error:
                if self._closing:
                    raise
                self._next_endpoint()
                delay = retry.next()
                log.warning("cannot reach the gateway (%s); retrying in %.2fs", error, delay)
                await asyncio.sleep(delay)
        self._connected.set()
        # Watched again as requests of their own (not from this reader's task, which their answers need): one the
        # gateway cannot serve yet is retried, so a child that ended meanwhile is not missed.
        for parent in self._watched:
            self._background.spawn(self._watch_again(parent))
        for request_id, (_, message) in list(self._pending.items()):
            await self._send_raw(message.model_copy(update={"id": request_id}))

    async def _watch_again(self, parent: str) -> None:
        try:
            await self._request(WorkerWatch(run=self.run, parent=parent))
        except LinkError as error:
            log.error("cannot watch the children of %s again: %s", parent, error.message)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None and self._owns_session:
            await self._session.close()

    async def _send_raw(self, message: pydantic.BaseModel) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
            await self._ws.send_str(message.model_dump_json())

    async def _send(self, message: pydantic.BaseModel) -> None:
        await self._connected.wait()
        await self._send_raw(message)

    async def _request(self, message: pydantic.BaseModel) -> GatewayReply:
        retry = RetryDelay(_RETRY_FIRST, _RETRY_MAX)
        while True:
            request_id = next(self._ids)
            message = message.model_copy(update={"id": request_id})
            future: asyncio.Future[GatewayReply] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = (future, message)
            await self._send(message)
            reply = await future
            if reply.type != "error":
                return reply
            if reply.code != STORE_UNAVAILABLE:
                raise LinkError(reply.code or "error", reply.message or "")
            # The gateway lost its store for a while: every request is idempotent, so send it again until it is back.
            delay = retry.next()
            log.warning("the gateway's store is unavailable; retrying in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _read_forever(self) -> None:
        while True:
            assert self._ws is not None
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                self._dispatch(GatewayReply.model_validate_json(message.data))
            if self._closing:
                return
            self._connected.clear()
            self._next_endpoint()
            log.warning("lost the gateway connection; reconnecting to %s", self.endpoint)
            await self._open()

    def _dispatch(self, reply: GatewayReply) -> None:
        if reply.type == "children":
            for child in reply.actions:
                self._children[child.name] = child
                if child.phase.is_terminal:
                    for waiter in self._waiters.pop(child.name, ()):
                        if not waiter.done():
                            waiter.set_result(child)
            if not reply.id:
                return
        pending = self._pending.pop(reply.id, None)
        if pending is not None and not pending[0].done():
            pending[0].set_result(reply)

    # -- what the controller and the runtime call ------------------------------------------------------------

    def submit(self, request: ActionSubmitRequest) -> asyncio.Future[ActionSummary]:
        future: asyncio.Future[ActionSummary] = asyncio.get_running_loop().create_future()
        self._to_submit.append((request, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))
        return future

    async def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._to_submit = self._to_submit, []
        for i in range(0, len(batch), _MAX_BATCH):
            chunk = batch[i : i + _MAX_BATCH]
            try:
                reply = await self._request(WorkerSubmit(run=self.run, actions=[r for r, _ in chunk]))
            except LinkError as error:
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), summary in zip(chunk, reply.actions, strict=True):
                if not future.done():
                    future.set_result(summary)

    async def wait_child(self, parent: str, name: str) -> ActionSummary:
        """The child once it reaches a terminal phase."""
        known = self._children.get(name)
        if known is not None and known.phase.is_terminal:
            return known
        future: asyncio.Future[ActionSummary] = asyncio.get_running_loop().create_future()
        self._waiters[name].append(future)
        if parent not in self._watched:
            self._watched.add(parent)
            await self._request(WorkerWatch(run=self.run, parent=parent))
        known = self._children.get(name)
        if known is not None and known.phase.is_terminal and not future.done():
            future.set_result(known)
        return await future

    def record_trace(self, action: str, key: str, trace: WireTrace) -> None:
        """Send a checkpoint now, without waiting for an answer: losing one only means running it again."""
        self._background.spawn(self._send(WorkerTrace(run=self.run, action=action, key=key, trace=trace)))

    async def traces(self, action: str) -> dict[str, WireTrace]:
        return (await self._request(WorkerTraces(run=self.run, action=action))).traces

    async def report(self, action: str, event: ActionEvent, traces: dict[str, WireTrace]) -> ActionSummary:
        reply = await self._request(WorkerReport(run=self.run, action=action, event=event, traces=traces))
        return reply.actions[0]

    # -- conditions (HTTP: a long poll each, so a wait outlives this socket and the gateway) --------------------

    async def create_condition(self, action: str, name: str, body: ConditionCreate) -> ConditionRecord:
        return await self._http(ConditionRecord, "PUT", self._condition_path(action, name), body)

    async def wait_condition(self, action: str, name: str, within: float | None = None) -> ConditionRecord:
        """The condition once it is signalled or timed out, or as it is after `within` seconds (None: however long
        that takes, across gateway restarts)."""
        deadline = None if within is None else time.monotonic() + within
        while True:
            wait = CONDITION_POLL if deadline is None else min(CONDITION_POLL, deadline - time.monotonic())
            params = {"wait": f"{max(wait, 0.0):.3f}"}
            record = await self._http(ConditionRecord, "GET", self._condition_path(action, name), params=params)
            if record.state != "waiting" or (deadline is not None and time.monotonic() >= deadline):
                return record

    async def suspend(self, action: str, body: SuspendRequest) -> SuspendAnswer:
        return await self._http(SuspendAnswer, "POST", f"/api/v1/runs/{self.run}/actions/{action}/suspend", body)

    def _condition_path(self, action: str, name: str) -> str:
        return f"/api/v1/runs/{self.run}/actions/{action}/conditions/{urllib.parse.quote(name, safe='')}"

    async def _http(
        self,
        answer: type[M],
        method: str,
        path: str,
        body: pydantic.BaseModel | None = None,
        params: dict[str, str] | None = None,
    ) -> M:
        """One call of the gateway's HTTP API, sent again while the gateway is away (every one is idempotent)."""
        assert self._session is not None
        data = body.model_dump_json() if body is not None else None
        headers = {**self._headers, "Content-Type": "application/json"} if data is not None else self._headers
        timeout = aiohttp.ClientTimeout(total=CONDITION_POLL + 30, connect=10)
        retry = RetryDelay(_RETRY_FIRST, _RETRY_MAX)
        while True:
            try:
                async with self._session.request(
                    method, self.endpoint + path, data=data, headers=headers, params=params, timeout=timeout
                ) as response:
                    text = await response.text()
                    if response.status < 400:
                        return answer.model_validate_json(text)
                    if response.status not in (502, 503, 504):
                        raise _refusal(response.status, text)
                    why = f"{response.status}: {text[:200]}"
            except (aiohttp.ClientError, TimeoutError) as error:
                why = str(error) or type(error).__name__
            self._next_endpoint()
            delay = retry.next()
            log.warning("%s %s: the gateway did not answer (%s); retrying in %.2fs", method, path, why, delay)
            await asyncio.sleep(delay)


def _refusal(status: int, text: str) -> LinkError:
    """The gateway's `{code, message}` answer as a LinkError (its text as it is when it is not one)."""
    try:
        answer = json.loads(text)
        return LinkError(str(answer["code"]), str(answer["message"]))
    except (ValueError, KeyError, TypeError):
        return LinkError(str(status), text)
