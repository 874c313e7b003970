"""The long-lived connections of remote execution: one WebSocket per agent, one per worker.

Agents (`/api/v1/agents/connect`, scope `agent:CLUSTER`) say hello with their cluster's record, get an epoch and a
lease, heartbeat, receive batched assignments and aborts, and report events and logs. Workers
(`/api/v1/workers/connect`, scope `worker:RUN`) submit child actions in batches, watch their children, fetch
and record trace checkpoints, and report their action's result. Messages are JSON `flyte._wire` models; a
message that does not validate is answered with an error and dropped, never half-applied.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path

import pydantic
from aiohttp import WSMsgType, web

from flyte._wire import (
    AgentEvent,
    AgentEvents,
    AgentHeartbeat,
    AgentHello,
    AgentLogs,
    AgentWelcome,
    CloseCode,
    GatewayReply,
    StaleMessage,
    WireTrace,
    WorkerReport,
    WorkerSubmit,
    WorkerTrace,
    WorkerTraces,
    WorkerWatch,
)
from flyte._worker_link import STORE_UNAVAILABLE
from gateway._api import SERVICES, Services, may_read, services, visible_run
from gateway._auth import Principal, principal_of
from gateway._dispatch import DISPATCHER, HEARTBEAT_INTERVAL, LEASE_TTL, AgentSession, Dispatcher, Send
from gateway._errors import ApiError, bad_request, describe_validation_error, not_found
from gateway.store import Put, StoreError, StoreUnavailable

log = logging.getLogger("flyte.gateway.connections")

LOGS_DIR = web.AppKey("logs_dir", Path)
TRACES = "/flyte/traces/"
_AGENT_MESSAGES: pydantic.TypeAdapter[AgentHeartbeat | AgentEvents | AgentLogs] = pydantic.TypeAdapter(
    AgentHeartbeat | AgentEvents | AgentLogs
)
WorkerMessage = WorkerSubmit | WorkerWatch | WorkerReport | WorkerTraces | WorkerTrace
_WORKER_MESSAGES: pydantic.TypeAdapter[WorkerMessage] = pydantic.TypeAdapter(WorkerMessage)


async def _writer(ws: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
    """One writer per socket: sends never interleave, and a slow peer never blocks the dispatcher."""
    while True:
        message = await outbox.get()
        await ws.send_str(message)


async def agent_connect(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    dispatcher = request.app[DISPATCHER]
    try:
        first = await ws.receive(timeout=10)
        hello = AgentHello.model_validate_json(first.data)
    except (pydantic.ValidationError, TypeError, TimeoutError) as error:
        await ws.close(code=CloseCode.BAD_HELLO, message=f"say hello first: {error}"[:120].encode())
        return ws
    cluster = hello.cluster.name
    principal = principal_of(request)
    if not principal.allows(f"agent:{cluster}"):
        await ws.close(code=CloseCode.FORBIDDEN, message=f"this token may not serve cluster {cluster}".encode())
        return ws
    try:
        session = await dispatcher.open_session(hello.cluster, ws, hello.running)
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
    writer = asyncio.create_task(_writer(ws, session.outbox))
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            if dispatcher.sessions.get(cluster) is not session:
                await ws.send_str(StaleMessage(reason="a newer session of this cluster exists").model_dump_json())
                break
            await _agent_message(request.app[SERVICES], dispatcher, request.app[LOGS_DIR], session, message.data)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        dispatcher.close_session(session)
        log.info("agent of %s disconnected (epoch %d)", cluster, session.epoch)
    return ws


async def _agent_message(svc: Services, dispatcher: Dispatcher, logs: Path, session: AgentSession, data: str) -> None:
    try:
        message = _AGENT_MESSAGES.validate_json(data)
    except pydantic.ValidationError as error:
        log.warning("bad message from %s: %s", session.name, describe_validation_error(error))
        return
    if isinstance(message, AgentHeartbeat):
        await dispatcher.heartbeat(session, message.free, message.warm, message.running)
    elif isinstance(message, AgentEvents):
        await asyncio.gather(*(_agent_event(svc, session, item) for item in message.events))
    else:
        path = logs / message.run / f"{message.action}.{message.attempt}.log"
        await asyncio.to_thread(_append, path, message.text)


async def _agent_event(svc: Services, session: AgentSession, item: AgentEvent) -> None:
    # The cluster is the session's own; the epoch stays the assignment's, so an event about work this cluster was
    # given under an older session is refused if that work has since been placed again.
    event = item.event
    if event.cluster != session.name:
        event = event.model_copy(update={"cluster": session.name})
    try:
        await svc.runs.report(item.run, item.action, event)
    except ApiError as error:
        log.info(
            "refused %s event of %s/%s from %s: %s",
            event.phase.value,
            item.run,
            item.action,
            session.name,
            error.message,
        )


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


async def worker_connect(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=32 * 1024 * 1024)
    await ws.prepare(request)
    svc = services(request)
    dispatcher = request.app[DISPATCHER]
    principal = principal_of(request)
    outbox: asyncio.Queue[str] = asyncio.Queue()

    async def send(reply: GatewayReply) -> None:
        outbox.put_nowait(reply.model_dump_json())

    writer = asyncio.create_task(_writer(ws, outbox))
    handlers: set[asyncio.Task[None]] = set()
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            # Each message is handled on its own: a worker with many actions in flight is not served one at a time.
            task = asyncio.create_task(_handle_worker_message(svc, dispatcher, principal, message.data, send))
            handlers.add(task)
            task.add_done_callback(handlers.discard)
    finally:
        dispatcher.unwatch(send)
        for handler in handlers:
            handler.cancel()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def _handle_worker_message(
    svc: Services, dispatcher: Dispatcher, principal: Principal, data: str, send: Send
) -> None:
    request_id = 0
    try:
        parsed = _WORKER_MESSAGES.validate_json(data)
        request_id = parsed.id
        run = await svc.runs.get_run(parsed.run)
        if not may_read(principal, run):
            raise not_found(f"no run named {parsed.run}")
        principal.require(f"worker:{run.name}", "run", project=run.project)
        await _worker_message(svc, dispatcher, parsed, send, from_worker=f"worker:{run.name}" in principal.scopes)
    except pydantic.ValidationError as error:
        await send(GatewayReply(type="error", id=request_id, code="invalid", message=describe_validation_error(error)))
    except ApiError as error:
        await send(GatewayReply(type="error", id=request_id, code=error.code, message=error.message))
    except StoreUnavailable as error:
        # Not the worker's fault and not for good: it sends the message again (each kind is idempotent).
        await send(GatewayReply(type="error", id=request_id, code=STORE_UNAVAILABLE, message=str(error)))
    except Exception:
        log.exception("a worker message failed")
        await send(GatewayReply(type="error", id=request_id, code="internal", message="internal error"))


async def _worker_message(
    svc: Services,
    dispatcher: Dispatcher,
    message: WorkerMessage,
    send: Send,
    *,
    from_worker: bool,
) -> None:
    if isinstance(message, WorkerSubmit):
        # Concurrently: their writes share transactions (group commit) instead of waiting on each other.
        results = await asyncio.gather(*(svc.runs.submit(message.run, r) for r in message.actions))
        svc.metrics.events["actions_submitted"] += sum(created for _, created in results)
        await send(GatewayReply(type="submitted", id=message.id, actions=[action for action, _ in results]))
    elif isinstance(message, WorkerWatch):
        await dispatcher.watch_children(message.run, message.parent, send, message.id)
    elif isinstance(message, WorkerTrace):
        key = f"{TRACES}{message.run}/{message.action}/{_safe(message.key)}"
        await svc.store.put(key, message.trace.model_dump_json().encode())
    elif isinstance(message, WorkerTraces):
        kvs, _ = await svc.store.range(f"{TRACES}{message.run}/{message.action}/")
        traces = {decode_trace_key(kv.key.rsplit("/", 1)[1]): WireTrace.model_validate_json(kv.value) for kv in kvs}
        await send(GatewayReply(type="traces", id=message.id, parent=message.action, traces=traces))
    else:
        if message.traces:
            ops = [
                Put(f"{TRACES}{message.run}/{message.action}/{_safe(k)}", t.model_dump_json().encode())
                for k, t in message.traces.items()
            ]
            for i in range(0, len(ops), 100):
                await svc.store.txn([], ops[i : i + 100])
        action = await svc.runs.report(message.run, message.action, message.event, from_worker=from_worker)
        await send(GatewayReply(type="reported", id=message.id, actions=[action]))


def _safe(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


async def get_logs(request: web.Request) -> web.Response:
    svc = services(request)
    run = await visible_run(request)
    action = await svc.runs.get_action(run.name, request.match_info["action"])
    attempt = request.query.get("attempt", str(max(action.attempts, 1)))
    if not attempt.isdigit():
        raise bad_request("attempt must be a number")
    path = request.app[LOGS_DIR] / run.name / f"{action.name}.{attempt}.log"
    text = await asyncio.to_thread(lambda: path.read_text() if path.exists() else "")
    return web.Response(text=text, content_type="text/plain")


def decode_trace_key(key: str) -> str:
    return base64.urlsafe_b64decode(key.encode()).decode()
