"""The long-lived connections of remote execution: one WebSocket per agent, one per worker.

Agents (`/api/v1/agents/connect`, scope `agent:CLUSTER`) say hello with their cluster's record, get an epoch and a
lease, heartbeat, receive batched assignments and aborts, and report events and logs. Events come from the agent's
outbox, numbered, until acknowledged: each batch is answered with how far they are applied (`EventsAck`), and a
repeat is acknowledged without being applied again (`gateway._event_acks`). Workers
(`/api/v1/workers/connect`, scope `worker:RUN`) submit child actions in batches, watch their children, fetch
and record trace checkpoints, and report their action's result. Messages are JSON `flyte._wire` models; a
message that does not validate is answered with an error and dropped, never half-applied.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import pydantic
from aiohttp import WSMsgType, web

from flyte._background import Background
from flyte._env import env_int, env_switch
from flyte._gateway_socket import STORE_UNAVAILABLE
from flyte._wire import (
    FROM_AGENT,
    FROM_WORKER,
    WORKER_PROTOCOL,
    ActionSummary,
    AgentEvent,
    AgentEvents,
    AgentHeartbeat,
    AgentHello,
    AgentLogs,
    AgentWelcome,
    Assignment,
    CloseCode,
    EventsAck,
    FromWorker,
    GatewayReply,
    Phase,
    RunSummary,
    StaleMessage,
    WireTrace,
    WorkerReport,
    WorkerSubmit,
    WorkerTrace,
    WorkerTraces,
    WorkerWatch,
    pool_key,
)
from gateway._agent_outbox import AGENT_UNREAD_LIMIT, AgentOutbox
from gateway._api import SERVICES, Services, may_read, services, visible_run
from gateway._auth import Authenticator, Principal, principal_of
from gateway._authz import Act, Target, authorize
from gateway._dispatch import (
    DISPATCHER,
    HEARTBEAT_INTERVAL,
    LEASE_TTL,
    AgentSession,
    Dispatcher,
    Send,
)
from gateway._domain_errors import Busy, DomainError, NotFound
from gateway._eager import start_eagerly
from gateway._errors import ApiError, bad_request, describe_validation_error
from gateway._event_acks import EVENT_ACKS, EventAcks
from gateway._keys import log_chunk_key, logs_prefix, placement_key, trace_key, traces_prefix
from gateway._otlp import AUTHENTICATOR
from gateway._runs import ChildrenHere
from gateway.store import KeyValue, Put, StoreError, StoreUnavailable

log = logging.getLogger("flyte.gateway.connections")
Give = Callable[[list[Assignment]], None]
"""Sends a worker children to start itself (`GatewayReply.here`)."""

CHILDREN_HERE = env_switch("FLYTE_CHILDREN_HERE", True)
"""Whether a pool worker's children of its own pool may be sent to it to start itself (`ChildrenHere`); off, the
gateway does not choose `WORKER_PROTOCOL`, so workers offer no room and every child goes through its agent."""
_WORKER_PROTOCOLS = (WORKER_PROTOCOL,) if CHILDREN_HERE else ()
LOG_LIMIT = env_int("FLYTE_ATTEMPT_LOG_LIMIT", 32 * 1024 * 1024)
"""The most log bytes kept per attempt (tests lower it); past it, an agent's uploads are dropped (with one note)."""
_LOG_CUT = "\n[flyte: this attempt's log reached its limit of {} bytes; the rest was dropped]\n"


WORKER_UNREAD_LIMIT = env_int("FLYTE_WORKER_UNREAD_LIMIT", 64 * 1024 * 1024)
"""Bytes of answers a worker socket may leave unread before the gateway cuts it off (tests lower it)."""


class _WorkerOutbox:
    """What the gateway has yet to send on one worker socket, bounded. A worker that stops reading (a hostile one:
    any task's code holds its attempt's token) would otherwise have its answers buffered without end; past
    `WORKER_UNREAD_LIMIT` the socket is cut off instead. A worker reconnects and asks again: every request is
    idempotent, its watches are renewed, and a child sent to start `here` is run by its agent after `HELD_SECONDS`.

    The first message of a turn of the loop is sent as it is put, in that turn (`start_eagerly`): a chain call's
    `here` and its parent's news do not wait for a writer task's turn. The rest of the turn's messages follow it
    together at the turn's end, as a writer task sent them, so that a fan-out's answers reach the worker in bursts
    it reads at once rather than one wake-up each. A send that has to wait for the socket to drain finishes in a
    task, and the messages put meanwhile follow it in order."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, svc: Services, limit: int):
        self._ws = ws
        self._request = request
        self._svc = svc
        self._limit = limit
        self._waiting: deque[str] = deque()
        """Messages put after this turn's first, or while a send waits for the socket to drain, in order."""
        self._draining: asyncio.Future[None] | None = None
        """The send waiting for the socket to drain, if one is."""
        self._turn_started = False
        """This turn of the loop sent its first message: the others wait for its end."""
        self._unsent = 0
        self._closed = False
        """Nothing more is sent: the socket was cut off, a send failed, or the connection ended."""

    def put(self, text: str) -> None:
        if self._closed:
            return
        self._unsent += len(text)
        if self._unsent > self._limit:
            self._svc.metrics.events["worker_sockets_cut_off"] += 1
            log.warning("a worker left over %d bytes of answers unread: its socket is cut off", self._limit)
            self._abort()
        elif self._draining is not None or self._turn_started:
            self._waiting.append(text)
        else:
            self._turn_started = True
            asyncio.get_running_loop().call_soon(self._turn_ended)
            self._send(text)

    def close(self) -> None:
        self._closed = True
        self._waiting.clear()
        if self._draining is not None:
            self._draining.cancel()

    def _turn_ended(self) -> None:
        self._turn_started = False
        self._send_waiting()

    def _send_waiting(self) -> None:
        while self._waiting and self._draining is None and not self._closed:
            self._send(self._waiting.popleft())

    def _send(self, text: str) -> None:
        try:
            draining = start_eagerly(self._ws.send_str(text))
        except Exception as error:
            self._failed(error)
            return
        if draining is None:
            self._unsent -= len(text)
            return
        self._draining = draining
        draining.add_done_callback(lambda done: self._drained(done, text))

    def _drained(self, done: asyncio.Future[None], text: str) -> None:
        self._draining = None
        if done.cancelled():
            return
        if (error := done.exception()) is not None:
            self._failed(error)
            return
        self._unsent -= len(text)
        self._send_waiting()

    def _failed(self, error: BaseException) -> None:
        """A send failed: nothing more is sent here. The socket closed (or was cut off) and its reader ends the
        connection; anything else is a bug, logged, and the connection is ended so that the worker reconnects and
        asks again rather than wait for answers that will not come."""
        if isinstance(error, ConnectionResetError):
            self._closed = True
            return
        log.error("sending on a worker socket failed; closing it", exc_info=error)
        self._abort()

    def _abort(self) -> None:
        """End the connection (its reader then ends the socket's handler); nothing more is sent."""
        self._closed = True
        if self._request.transport is not None:
            self._request.transport.abort()


async def _writer(ws: web.WebSocketResponse, outbox: AgentOutbox) -> None:
    """One writer per agent socket: sends never interleave, and a slow agent never blocks the dispatcher."""
    while (message := await outbox.next()) is not None:
        try:
            await ws.send_str(message)
        except ConnectionResetError:
            return  # the socket closed: its reader ends the connection
        outbox.sent(message)


async def agent_connect(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    links = services(request).links
    links.add(ws)
    try:
        return await _serve_agent(request, ws)
    finally:
        links.discard(ws)


async def _serve_agent(request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    dispatcher = request.app[DISPATCHER]
    try:
        first = await ws.receive(timeout=10)
        hello = AgentHello.model_validate_json(first.data)
    except (pydantic.ValidationError, TypeError, TimeoutError) as error:
        await ws.close(code=CloseCode.BAD_HELLO, message=f"say hello first: {error}"[:120].encode())
        return ws
    cluster = hello.cluster.name
    principal = principal_of(request)
    authenticator = request.app[AUTHENTICATOR]
    if not principal.allows(f"agent:{cluster}"):
        await ws.close(code=CloseCode.FORBIDDEN, message=f"this token may not serve cluster {cluster}".encode())
        return ws
    try:
        session = await dispatcher.open_session(hello.cluster, ws, hello.running, hello.reporting)
    except StoreError as error:
        # The socket is a WebSocket now: an HTTP error answer would corrupt it. Close it; the agent retries.
        await ws.close(
            code=CloseCode.STORE_UNAVAILABLE, message=f"the gateway cannot open a session now: {error}"[:120].encode()
        )
        return ws
    await ws.send_str(
        AgentWelcome(epoch=session.epoch, lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT_INTERVAL).model_dump_json()
    )
    log.info("agent of %s connected (epoch %d)", cluster, session.epoch)

    def cut_off() -> None:
        services(request).metrics.events["agent_sockets_cut_off"] += 1
        log.warning("the agent of %s left over %d bytes unread: its connection is cut off", cluster, AGENT_UNREAD_LIMIT)
        if request.transport is not None:
            request.transport.abort()  # its reader then ends the session, as for a dropped connection

    session.outbox.cut_off_with(cut_off)
    writer = asyncio.create_task(_writer(ws, session.outbox))
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            if dispatcher.sessions.get(cluster) is not session:
                await ws.send_str(StaleMessage(reason="a newer session of this cluster exists").model_dump_json())
                break
            try:
                # The socket authenticated once, when it opened: its token must not have been revoked since.
                await authenticator.check_current(principal)
            except ApiError as error:
                log.warning("closing the session of %s: %s", cluster, error.message)
                # Ended now: the close below waits for the agent's answer, up to 10 s from one that reads nothing.
                dispatcher.close_session(session)
                await ws.close(code=CloseCode.UNAUTHORIZED, message=error.message[:120].encode())
                break
            await _agent_message(request.app, dispatcher, session, message.data)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        dispatcher.close_session(session)
        log.info("agent of %s disconnected (epoch %d)", cluster, session.epoch)
    return ws


async def _agent_message(app: web.Application, dispatcher: Dispatcher, session: AgentSession, data: str) -> None:
    svc = app[SERVICES]
    try:
        message = FROM_AGENT.validate_json(data)
    except pydantic.ValidationError as error:
        log.warning("bad message from %s: %s", session.name, describe_validation_error(error))
        return
    if isinstance(message, AgentHeartbeat):
        await dispatcher.heartbeat(session, message.free, message.warm, message.running)
    elif isinstance(message, AgentEvents):
        ack = await _agent_events(svc, app[EVENT_ACKS], session, message)
        session.outbox.put_nowait(ack.model_dump_json())
    else:
        try:
            await _agent_logs(svc, session, message)
        except DomainError as error:
            log.info("refused logs of %s/%s from %s: %s", message.run, message.action, session.name, error.message)


def _session_principal(session: AgentSession) -> Principal:
    """What an agent's socket speaks as: its own cluster's agent, whatever else its token may hold."""
    return Principal(frozenset({f"agent:{session.name}"}), frozenset())


async def _agent_logs(svc: Services, session: AgentSession, message: AgentLogs) -> None:
    """Append an attempt's log, if that attempt was placed on the session's cluster, up to `LOG_LIMIT`."""
    key = (message.run, message.action, message.attempt)
    if key not in session.log_attempts:
        await svc.runs.get_run(message.run)  # logs of a run that does not exist are refused (404)
        placed_on = None
        record = await svc.store.get(placement_key(message.run, message.action, message.attempt))
        if record is not None:
            placed_on = json.loads(record.value).get("cluster")
        else:
            current = await svc.runs.get_action(message.run, message.action)
            placed_on = current.cluster if current.attempts == message.attempt else None
        target = Target(run=message.run, action=message.action, attempt=message.attempt, placed_on=placed_on)
        authorize(_session_principal(session), Act.AGENT_LOGS, target)
        if len(session.log_attempts) >= 10_000:
            session.log_attempts.clear()
        # What this attempt logged before (through another replica, or before a reconnect) counts to its limit.
        kvs, _ = await svc.store.range(logs_prefix(message.run, message.action, message.attempt))
        session.log_attempts[key] = sum(len(kv.value) for kv in kvs)
    size = session.log_attempts[key]
    if size >= LOG_LIMIT:
        return
    data = message.text.encode()
    if size + len(data) > LOG_LIMIT:
        data = data[: LOG_LIMIT - size] + _LOG_CUT.format(LOG_LIMIT).encode()
    session.log_attempts[key] = size + len(data)
    # Chunks keyed by when they arrived: one attempt's output comes from one agent over one socket, in order.
    stamp = f"{time.time_ns():020d}-{secrets.token_hex(2)}"
    await svc.store.put(log_chunk_key(message.run, message.action, message.attempt, stamp), data)


async def _agent_events(svc: Services, acks: EventAcks, session: AgentSession, message: AgentEvents) -> EventsAck:
    """Apply a batch from an agent's outbox, each event once: one action's events in order, different actions'
    concurrently. The answer says up to where the agent incarnation's events are done."""
    applied = acks.of(session.name, message.incarnation)
    applied.since(message.since)
    by_action: dict[tuple[str, str], list[AgentEvent]] = defaultdict(list)
    for item in sorted(message.events, key=lambda item: item.seq):
        if not applied.has(item.seq):
            by_action[(item.run, item.action)].append(item)

    async def in_order(items: list[AgentEvent]) -> None:
        for item in items:
            if not await _agent_event(svc, session, item):
                return  # this action's later events wait behind it for the resend
            applied.done(item.seq)

    await asyncio.gather(*(in_order(items) for items in by_action.values()))
    return EventsAck(incarnation=message.incarnation, upto=applied.upto)


async def _agent_event(svc: Services, session: AgentSession, item: AgentEvent) -> bool:
    """Apply one agent event; whether it is done (applied, a repeat, or refused for good) rather than to be sent
    again (the store is unavailable, or the action changes too fast)."""
    # The cluster is the session's own; the epoch stays the assignment's, so an event about work this cluster was
    # given under an older session is refused if that work has since been placed again.
    event = item.event
    if event.cluster != session.name:
        event = event.model_copy(update={"cluster": session.name})
    try:
        current, _ = await svc.runs.read_action(item.run, item.action)
        target = Target(
            run=item.run, action=item.action, attempt=event.attempt, current=current, event_phase=event.phase
        )
        authorize(_session_principal(session), Act.AGENT_EVENT, target)
        # Its end is durable before it is acknowledged; a `running` mark need not be (`Runs.report`).
        await svc.runs.report(item.run, item.action, event, seen=current)
        svc.metrics.events[f"agent_events_{event.phase.value}"] += 1
    except StoreError as error:
        log.warning("%s event of %s/%s waits for the store (%s)", event.phase.value, item.run, item.action, error)
        return False
    except DomainError as error:
        if isinstance(error, Busy):
            return False
        log.info(
            "refused %s event of %s/%s from %s: %s",
            event.phase.value,
            item.run,
            item.action,
            session.name,
            error.message,
        )
    return True


_NOT_FOR_WORKERS: dict[str, Any] = {
    "actions": {
        "__all__": {
            "inputs",
            "custom_context",
            "overrides",
            "traceparent",
            "span_parent",
            "waiting",
            "cache_key",
            "not_before",
            "created_at",
            "updated_at",
            "started_at",
            "ended_at",
            "user_failures",
            "system_failures",
            "cluster",
            "epoch",
            "revision",
            "version",
        }
    }
}
"""What a worker never reads of the actions it is sent (its children's and its own): a worker reads a child's phase,
output and error. Left out, a reply is a fraction of the JSON to write and for the worker to validate."""
_NOT_FOR_WORKERS_NOR_HERE: dict[str, Any] = {**_NOT_FOR_WORKERS, "here": True}
_RUNNING_SOMEWHERE = (Phase.PLACED, Phase.RUNNING)


def worker_reply_json(reply: GatewayReply) -> str:
    # `here` only goes to a worker that offered room (so to a worker whose SDK knows it).
    return reply.model_dump_json(exclude=_NOT_FOR_WORKERS if reply.here else _NOT_FOR_WORKERS_NOR_HERE)


async def worker_connect(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=32 * 1024 * 1024, protocols=_WORKER_PROTOCOLS)
    await ws.prepare(request)
    svc = services(request)
    dispatcher = request.app[DISPATCHER]
    principals = SocketPrincipals(request.app[AUTHENTICATOR], principal_of(request))
    outbox = _WorkerOutbox(ws, request, svc, WORKER_UNREAD_LIMIT)

    async def send(reply: GatewayReply) -> None:
        outbox.put(worker_reply_json(reply))

    def give(assignments: list[Assignment]) -> None:
        outbox.put(worker_reply_json(GatewayReply(type="here", here=assignments)))

    # A worker of the first protocol takes no `room`, and reads its report's answer for the action it reported.
    speaks_here = ws.ws_protocol == WORKER_PROTOCOL

    handlers = Background()
    svc.links.add(ws)
    # One per one-shot worker and one per pool worker (its attempts share it): more means workers reconnect.
    svc.metrics.events["worker_sockets_opened"] += 1
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            # Each message is handled on its own: a worker with many actions in flight is not served one at a time.
            handlers.spawn(
                _handle_worker_message(svc, dispatcher, principals, message.data, send, give if speaks_here else None)
            )
    finally:
        svc.links.discard(ws)
        dispatcher.unwatch(send)
        for handler in handlers:
            handler.cancel()
        outbox.close()
    return ws


class SocketPrincipals:
    """Who each message on a worker socket acts as: the token it says (a pool worker's socket carries the messages
    of every attempt it runs, each with that attempt's token), or else the one that opened the socket. A token is
    verified once per socket; whether it is still good (not revoked, its attempt not long over) is checked for
    every message, as for the socket's own."""

    _LIMIT = 1024

    def __init__(self, authenticator: Authenticator, opened_by: Principal):
        self.authenticator = authenticator
        self._opened_by = opened_by
        self._verified: dict[str, Principal] = {}

    async def of(self, token: str | None) -> Principal:
        if token is None:
            return self._opened_by
        principal = self._verified.get(token)
        if principal is None:
            # Only identified here: the message's handler checks it is still current, with the action it reads.
            principal = await self.authenticator.identify(token)
            if len(self._verified) >= self._LIMIT:
                self._verified.clear()
            self._verified[token] = principal
        return principal


async def _handle_worker_message(
    svc: Services, dispatcher: Dispatcher, principals: SocketPrincipals, data: str, send: Send, give: Give | None = None
) -> None:
    """`give`: sends the worker children to start (`GatewayReply.here`); None for a worker of the first protocol
    (`WORKER_PROTOCOL` not chosen), which takes no `room` and reads the action it reported in its report's answer."""
    request_id = 0
    try:
        parsed = FROM_WORKER.validate_json(data)
        request_id = parsed.id
        principal = await principals.of(parsed.token)
        authenticator = principals.authenticator
        # The token's own action, when the message reports its attempt or submits children under it: read once, for
        # the token check and for the report (compared against) or the submission (the children's parent).
        own = await _own_action(svc, principal, parsed)
        # The socket authenticated once, when it opened: its token must still be good for each message (not revoked
        # or expired; a worker token's attempt not over), before the message learns anything, even whether a run exists.
        await authenticator.check_current(principal, own[0] if own is not None else None)
        run: RunSummary | None = None
        if isinstance(parsed, WorkerReport) and own is not None:
            # Its action was just read, so its run exists (a run is deleted after its actions), and a run's project
            # never changes: the report is authorized by the project as remembered, without reading the run.
            project, _ = await svc.runs.scope_of(parsed.run)
        else:
            run = await svc.runs.get_run(parsed.run)  # a submission judges its children by it (has the run ended?)
            project = run.project
        if not may_read(principal, project, parsed.run):
            raise NotFound(f"no run named {parsed.run}")
        for act, target in _worker_acts(parsed, project):
            authorize(principal, act, target)
        await _worker_message(
            svc, dispatcher, parsed, send, from_worker=principal.attempt is not None, run=run, own=own, give=give
        )
    except pydantic.ValidationError as error:
        await send(GatewayReply(type="error", id=request_id, code="invalid", message=describe_validation_error(error)))
    except (ApiError, DomainError) as error:
        await send(GatewayReply(type="error", id=request_id, code=error.code, message=error.message))
    except StoreUnavailable as error:
        # Not the worker's fault and not for good: it sends the message again (each kind is idempotent).
        await send(GatewayReply(type="error", id=request_id, code=STORE_UNAVAILABLE, message=str(error)))
    except Exception:
        log.exception("a worker message failed")
        await send(GatewayReply(type="error", id=request_id, code="internal", message="internal error"))


async def _own_action(
    svc: Services, principal: Principal, message: FromWorker
) -> tuple[ActionSummary, KeyValue] | None:
    """The action a worker token acts for, when the message reports on it or submits children in its run (under it:
    `authorize` refuses any other parent), so the token check reads it anyway; None for any other message, or an
    action that is not there (the token check says why)."""
    ref = principal.attempt
    if ref is None or ref.run != message.run:
        return None
    if not (isinstance(message, WorkerSubmit) or (isinstance(message, WorkerReport) and message.action == ref.action)):
        return None
    try:
        return await svc.runs.read_action(ref.run, ref.action)
    except NotFound:
        return None


def _worker_acts(message: FromWorker, project: str) -> list[tuple[Act, Target]]:
    """What a worker message does, for `authorize`: one act per child of a submission."""
    run = message.run
    if isinstance(message, WorkerSubmit):
        return [(Act.SUBMIT, Target(project, run, action=r.parent)) for r in message.actions]
    if isinstance(message, WorkerWatch):
        return [(Act.WATCH_CHILDREN, Target(project, run, action=message.parent))]
    if isinstance(message, WorkerTrace):
        return [(Act.CHECKPOINT_WRITE, Target(project, run, action=message.action))]
    if isinstance(message, WorkerTraces):
        return [(Act.CHECKPOINT_READ, Target(project, run, action=message.action))]
    return [(Act.REPORT, Target(project, run, action=message.action, attempt=message.event.attempt))]


async def _worker_message(
    svc: Services,
    dispatcher: Dispatcher,
    message: FromWorker,
    send: Send,
    *,
    from_worker: bool,
    run: RunSummary | None = None,
    own: tuple[ActionSummary, KeyValue] | None = None,
    give: Give | None = None,
) -> None:
    """`run`: the run's record as just read (for a submission); `own`: the token's own action as just read for the
    token check (the reported action, or the parent of the children submitted); `give`: as for
    `_handle_worker_message`."""
    if isinstance(message, WorkerSubmit):
        assert run is not None
        parents = {own[0].name: own[1]} if own is not None else None
        here = _children_here(message, run, own[0] if own is not None else None, give) if give is not None else None
        results = await svc.runs.submit_many(run, message.actions, parents, here)
        svc.metrics.events["actions_submitted"] += sum(created for _, created in results)
        svc.metrics.events["actions_given_here"] += here.given if here is not None else 0
        await send(GatewayReply(type="submitted", id=message.id, actions=[action for action, _ in results]))
    elif isinstance(message, WorkerWatch):
        await dispatcher.watch_children(message.run, message.parent, send, message.id)
    elif isinstance(message, WorkerTrace):
        key = trace_key(message.run, message.action, encode_trace_key(message.key))
        await svc.store.put(key, message.trace.model_dump_json().encode())
    elif isinstance(message, WorkerTraces):
        kvs, _ = await svc.store.range(traces_prefix(message.run, message.action))
        traces = {decode_trace_key(kv.key.rsplit("/", 1)[1]): WireTrace.model_validate_json(kv.value) for kv in kvs}
        await send(GatewayReply(type="traces", id=message.id, parent=message.action, traces=traces))
    else:
        if message.traces:
            ops = [
                Put(trace_key(message.run, message.action, encode_trace_key(k)), t.model_dump_json().encode())
                for k, t in message.traces.items()
            ]
            for i in range(0, len(ops), 100):
                await svc.store.txn([], ops[i : i + 100])
        action = await svc.runs.report(
            message.run,
            message.action,
            message.event,
            from_worker=from_worker,
            seen=own[0] if own is not None else None,
        )
        # A worker of `WORKER_PROTOCOL` does not read the action back: one record fewer to encode and to validate.
        await send(GatewayReply(type="reported", id=message.id, actions=[] if give is not None else [action]))


def _children_here(
    message: WorkerSubmit, run: RunSummary, parent: ActionSummary | None, give: Give
) -> ChildrenHere | None:
    """The submitting pool worker's offer to start children of its own pool itself: its parent's pool, where that
    runs. The parent is the token's own action (every child's parent, as `authorize` checked), running somewhere."""
    if message.room == 0 or parent is None or parent.phase not in _RUNNING_SOMEWHERE:
        return None
    if parent.cluster is None or parent.version is None:
        return None
    env = parent.task.rpartition(".")[0]
    return ChildrenHere(parent.cluster, pool_key(run.project, run.domain, env, parent.version), message.room, give)


def encode_trace_key(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


async def get_logs(request: web.Request) -> web.Response:
    svc = services(request)
    run = await visible_run(request)
    action = await svc.runs.get_action(run.name, request.match_info["action"])
    attempt = request.query.get("attempt", str(max(action.attempts, 1)))
    if not attempt.isdigit():
        raise bad_request("attempt must be a number")
    kvs, _ = await svc.store.range(logs_prefix(run.name, action.name, int(attempt)))
    text = b"".join(kv.value for kv in kvs).decode(errors="replace")
    return web.Response(text=text, content_type="text/plain")


def decode_trace_key(key: str) -> str:
    return base64.urlsafe_b64decode(key.encode()).decode()
