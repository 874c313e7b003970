"""An attempt's conversation with the gateway: batched child submissions, child watches, traces, the result.

Submissions made in the same turn of the event loop travel as one message (a fan-out of 1,000 children is a few
messages, not 1,000 requests). A parent's children are watched once; each awaited child is a future resolved by
the watch. The messages go over a `GatewaySocket`: the link's own for a one-shot worker, or its pool worker's,
shared by the links of every attempt it runs (each message then says the link's token). After a dropped connection
the socket reconnects, has the link watch again (the snapshot answers whatever finished meanwhile) and resends
what was unanswered: submissions are idempotent by name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import defaultdict
from typing import TypeVar

import aiohttp
import pydantic

from ._background import Background
from ._gateway_socket import GatewaySocket, LinkError, request_retry
from ._replicas import Replicas
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

__all__ = ["LinkError", "WorkerLink"]

log = logging.getLogger("flyte.worker")
M = TypeVar("M", bound=pydantic.BaseModel)

_MAX_BATCH = 500
CONDITION_POLL = 50.0
"""Seconds one long poll of a waiting condition is held by the gateway before the worker asks again."""


class WorkerLink:
    def __init__(self, gateway: str | GatewaySocket, token: str, run: str):
        """`gateway`: the endpoint, for a link with a socket of its own (a one-shot worker's), or a pool worker's
        socket, shared by the links of its attempts."""
        self._own_socket = isinstance(gateway, str)
        self._socket = GatewaySocket(gateway) if isinstance(gateway, str) else gateway
        self.token = token
        self.run = run
        self._says_token = None if self._own_socket else token
        """What each message says of the token: nothing on a socket the token opened itself."""
        self._headers = {"Authorization": f"Bearer {token}"}
        self._to_submit: list[tuple[ActionSubmitRequest, asyncio.Future[ActionSummary]]] = []
        self._flush_scheduled = False
        self._watched: set[str] = set()
        self._children: dict[str, ActionSummary] = {}
        self._waiters: dict[str, list[asyncio.Future[ActionSummary]]] = defaultdict(list)
        self._background = Background()

    @property
    def replicas(self) -> Replicas:
        return self._socket.replicas

    @property
    def endpoint(self) -> str:
        return self._socket.endpoint

    async def connect(self) -> None:
        """Attach to the socket and wait until it is connected."""
        self._socket.attach(self)
        await self._socket.ready()

    async def close(self) -> None:
        self._socket.detach(self)
        if self._own_socket:
            await self._socket.close()

    def watch_again(self) -> None:
        # As requests of their own (not from the socket's reader, which their answers need): one the gateway cannot
        # serve yet is retried, so a child that ended meanwhile is not missed.
        for parent in self._watched:
            self._background.spawn(self._watch_again(parent))

    async def _watch_again(self, parent: str) -> None:
        try:
            await self._socket.request(WorkerWatch(run=self.run, parent=parent, token=self._says_token))
        except LinkError as error:
            log.error("cannot watch the children of %s again: %s", parent, error.message)

    def children(self, reply: GatewayReply) -> None:
        for child in reply.actions:
            self._children[child.name] = child
            if child.phase.is_terminal:
                for waiter in self._waiters.pop(child.name, ()):
                    if not waiter.done():
                        waiter.set_result(child)

    # -- what the controller and the runtime call ------------------------------------------------------------

    def submit(self, request: ActionSubmitRequest) -> asyncio.Future[ActionSummary]:
        future: asyncio.Future[ActionSummary] = asyncio.get_running_loop().create_future()
        self._to_submit.append((request, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Its first step runs after what is ready now: the other children of a `gather` submit first, and go in
            # the same message. A sequential call's submission leaves one turn of the loop sooner than it did through
            # `call_soon` (which took two: the callback, then the task's first step).
            self._background.spawn(self._flush())
        return future

    async def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._to_submit = self._to_submit, []
        await self._socket.ready()  # the gateway's protocol is known once connected: whether it takes `room`
        for i in range(0, len(batch), _MAX_BATCH):
            chunk = batch[i : i + _MAX_BATCH]
            try:
                reply = await self._socket.request(
                    WorkerSubmit(
                        run=self.run,
                        actions=[r for r, _ in chunk],
                        token=self._says_token,
                        room=min(self._socket.room(), len(chunk)),
                    )
                )
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
            self._socket.route(self.run, parent, self)
            await self._socket.request(WorkerWatch(run=self.run, parent=parent, token=self._says_token))
        known = self._children.get(name)
        if known is not None and known.phase.is_terminal and not future.done():
            future.set_result(known)
        return await future

    def record_trace(self, action: str, key: str, trace: WireTrace) -> None:
        """Send a checkpoint now, without waiting for an answer: losing one only means running it again."""
        trace_message = WorkerTrace(run=self.run, action=action, key=key, trace=trace, token=self._says_token)
        self._background.spawn(self._socket.send(trace_message))

    async def traces(self, action: str) -> dict[str, WireTrace]:
        return (await self._socket.request(WorkerTraces(run=self.run, action=action, token=self._says_token))).traces

    async def report(self, action: str, event: ActionEvent, traces: dict[str, WireTrace]) -> None:
        """Report the attempt's end; returns once the gateway has it (written, durably)."""
        report = WorkerReport(run=self.run, action=action, event=event, traces=traces, token=self._says_token)
        await self._socket.request(report)

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
        session = self._socket.session
        assert session is not None, "connect first"
        data = body.model_dump_json() if body is not None else None
        headers = {**self._headers, "Content-Type": "application/json"} if data is not None else self._headers
        timeout = aiohttp.ClientTimeout(total=CONDITION_POLL + 30, connect=10)
        retry = request_retry()
        while True:
            try:
                async with session.request(
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
            self.replicas.fail_over(self.endpoint)
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
