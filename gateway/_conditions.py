"""Conditions (`flyte.new_condition`): values a running task waits for, given by a person or a program.

A task's worker creates a condition on its action (`PUT .../actions/{action}/conditions/{name}`), then waits for it
with long polls (`GET ...?wait=S`). Anyone allowed to signal in the run's project gives it a value (`POST
/api/v1/runs/{run}/conditions/{name}/signal`), checked against the declared type at this edge. The record lives
in the store under `/flyte/conditions/{run}/{action}/{name}`:

    waiting -> signalled | timed_out      (never changed after; a re-attempt of the action reads it as it is)

So a condition outlives the worker, the agent and the gateway: a later attempt of the action creates it again,
is answered with the stored record, and returns the value at once when it was signalled meanwhile. A condition's
timeout counts from its first creation; the gateway ends it as `timed_out` when a wait or a signal finds the
deadline passed, in one compare-and-swap, so a signal and a timeout never both win.

A worker that waited `FLYTE_SUSPEND_AFTER` seconds suspends its attempt (`POST .../actions/{action}/suspend`): the
attempt ends without a result and the action queues again, due at the condition's deadline (or a durable sleep's
end). A signal makes it due now in its own transaction. See docs/conditions.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

from aiohttp import web

from flyte._wire import (
    ActionSummary,
    ConditionCreate,
    ConditionHook,
    ConditionHookDelivery,
    ConditionRecord,
    ConditionSignal,
    ConditionValue,
    Phase,
    RunSummary,
    SuspendAnswer,
    SuspendRequest,
)
from gateway._api import Route, _json, read_model, services, visible_run
from gateway._auth import principal_of
from gateway._authz import Act, Target, authorize
from gateway._connections import encode_trace_key
from gateway._errors import bad_request, conflict, not_found
from gateway._keys import action_key, condition_hook_key, condition_key, conditions_prefix, trace_key
from gateway._runs import decode_action
from gateway.store import Compare, Put, Store

MAX_WAIT = 60.0
"""The longest one long poll is held; the waiting worker asks again."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ACTION = re.compile(r"^a(0|[0-9a-f]{20})$")
_CAS_ATTEMPTS = 20
NEVER = 10 * 365 * 86400.0
"""How far off an action suspended on a condition without a timeout is due: its signal wakes it sooner."""


def _path_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise bad_request(f"condition name {name!r} must be letters, digits, '_', '.' or '-' (at most 128)")
    return name


def _path_action(request: web.Request) -> str:
    action = request.match_info["action"]
    if not _ACTION.match(action):
        raise not_found(f"no action {action}")
    return action


async def _run_for(request: web.Request, act: Act, action: str | None = None) -> RunSummary:
    run = await visible_run(request)
    authorize(principal_of(request), act, Target(run.project, run.name, action=action))
    return run


def check_value(record: ConditionRecord, value: ConditionValue) -> ConditionValue:
    """The value as the condition's declared type, or a 400 naming both types."""
    kind = record.data_type
    ok = (
        (kind == "bool" and isinstance(value, bool))
        or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (kind == "float" and isinstance(value, int | float) and not isinstance(value, bool))
        or (kind == "str" and isinstance(value, str))
    )
    if not ok:
        given = type(value).__name__
        raise bad_request(
            f"condition {record.name!r} takes a {kind}; {value!r} is a {given}", code="wrong_condition_type"
        )
    return float(value) if kind == "float" else value


async def create_condition(request: web.Request) -> web.Response:
    action, name = _path_action(request), _path_name(request)
    body = await read_model(request, ConditionCreate)
    run = await _run_for(request, Act.CHECKPOINT_WRITE, action)
    svc = services(request)
    await svc.runs.get_action(run.name, action)  # 404 for an action the run does not have
    now = time.time()
    record = ConditionRecord(
        run=run.name,
        action=action,
        name=name,
        prompt=body.prompt,
        prompt_type=body.prompt_type,
        description=body.description,
        data_type=body.data_type,
        created_at=now,
        deadline=now + body.timeout_seconds if body.timeout_seconds is not None else None,
    )
    key = condition_key(run.name, action, name)
    puts = [Put(key, record.model_dump_json().encode())]
    if body.webhook is not None:
        # In the creation's transaction: the first creation alone sends it, and the notifier finds it after a crash.
        hook = hook_delivery(body.webhook, record, f"{request.scheme}://{request.host}")
        puts.append(Put(condition_hook_key(run.name, action, name), hook.model_dump_json().encode()))
    result = await svc.store.txn([Compare(key, 0)], puts)
    if result.succeeded:
        return _json(record, status=201)
    current = result.current.get(key)
    assert current is not None
    existing = ConditionRecord.model_validate_json(current.value)
    if existing.data_type != record.data_type:
        raise conflict(
            f"condition {name!r} of action {action} exists with data type {existing.data_type}, not {record.data_type}",
            code="condition_exists",
        )
    return _json(await _expire_if_due(svc.store, key, existing))


def hook_delivery(hook: ConditionHook, record: ConditionRecord, origin: str) -> ConditionHookDelivery:
    """What to post for a condition's webhook: its payload with `{callback_uri}` filled in, or a default one."""
    callback = f"{origin}/api/v1/runs/{record.run}/conditions/{record.name}/signal"
    if hook.payload is None:
        body: dict[str, Any] = {
            "run": record.run,
            "action": record.action,
            "condition": record.name,
            "prompt": record.prompt,
            "data_type": record.data_type,
            "callback_uri": callback,
        }
    else:
        body = _fill(hook.payload, callback)
    return ConditionHookDelivery(url=hook.url, body=body)


def _fill(value: Any, callback: str) -> Any:
    if isinstance(value, str):
        return value.replace("{callback_uri}", callback)
    if isinstance(value, dict):
        return {key: _fill(item, callback) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, callback) for item in value]
    return value


async def get_condition(request: web.Request) -> web.Response:
    """One condition; `?wait=S` holds the answer up to S seconds (at most `MAX_WAIT`) while it is waiting."""
    action, name = _path_action(request), _path_name(request)
    wait_text = request.query.get("wait", "0")
    try:
        wait = min(float(wait_text), MAX_WAIT)
    except ValueError:
        raise bad_request(f"wait={wait_text!r} must be a number of seconds") from None
    if not wait >= 0:
        raise bad_request(f"wait={wait_text!r} must be a number of seconds >= 0")
    run = await _run_for(request, Act.READ)
    store = services(request).store
    key = condition_key(run.name, action, name)
    kv = await store.get(key)
    if kv is None:
        raise not_found(f"run {run.name} has no condition {name!r} of action {action}")
    record = await _expire_if_due(store, key, ConditionRecord.model_validate_json(kv.value))
    if record.state == "waiting" and wait > 0:
        limit = wait if record.deadline is None else min(wait, max(0.0, record.deadline - time.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                async for batch in store.watch(key, kv.mod_revision + 1):
                    if any(event.key == key for event in batch):
                        break
        latest = await store.get(key)
        assert latest is not None
        record = await _expire_if_due(store, key, ConditionRecord.model_validate_json(latest.value))
    return _json(record)


async def list_conditions(request: web.Request) -> web.Response:
    run = await _run_for(request, Act.READ)
    kvs, _ = await services(request).store.range(conditions_prefix(run.name))
    return _json([ConditionRecord.model_validate_json(kv.value) for kv in kvs])


async def signal_condition(request: web.Request) -> web.Response:
    name = _path_name(request)
    body = await read_model(request, ConditionSignal)
    run = await _run_for(request, Act.SIGNAL)
    store = services(request).store
    kvs, _ = await store.range(conditions_prefix(run.name))
    found = [
        ConditionRecord.model_validate_json(kv.value)
        for kv in kvs
        if kv.key.rsplit("/", 1)[1] == name and (body.action is None or kv.key.split("/")[-2] == body.action)
    ]
    if not found:
        raise not_found(f"run {run.name} has no condition {name!r} (yet); `flyte get conditions {run.name}` lists them")
    if len(found) > 1:
        actions = ", ".join(sorted(r.action for r in found))
        raise conflict(f"actions {actions} each have a condition {name!r}: say which (action)", code="ambiguous")
    value = check_value(found[0], body.value)
    principal = principal_of(request)
    by = f"token {principal.token_id}" if principal.token_id else "admin"
    key = condition_key(run.name, found[0].action, name)
    for _ in range(_CAS_ATTEMPTS):
        kv = await store.get(key)
        assert kv is not None
        current = await _expire_if_due(store, key, ConditionRecord.model_validate_json(kv.value))
        if current.state == "timed_out":
            raise conflict(f"condition {name!r} timed out before it was signalled", code="condition_ended")
        if current.state == "signalled":
            if current.value == value and type(current.value) is type(value):
                return _json(current)  # the same signal again: answered as the first
            raise conflict(f"condition {name!r} was already signalled with {current.value!r}", code="condition_ended")
        update = {"state": "signalled", "value": value, "ended_at": time.time(), "signalled_by": by}
        signalled = current.model_copy(update=update)
        compares, ops = await _wake(store, signalled)
        compares.append(Compare(key, kv.mod_revision))
        ops.append(Put(key, signalled.model_dump_json().encode()))
        result = await store.txn(compares, ops)
        if result.succeeded:
            return _json(signalled)
    raise conflict(f"condition {name!r} is changing too fast to signal; try again", code="busy")


async def _expire_if_due(store: Store, key: str, record: ConditionRecord) -> ConditionRecord:
    """The record, ended as `timed_out` first if it is waiting past its deadline (whoever wins the swap)."""
    now = time.time()
    while record.state == "waiting" and record.deadline is not None and now >= record.deadline:
        kv = await store.get(key)
        assert kv is not None
        record = ConditionRecord.model_validate_json(kv.value)
        if record.state != "waiting":
            break
        ended = record.model_copy(update={"state": "timed_out", "ended_at": now})
        result = await store.txn([Compare(key, kv.mod_revision)], [Put(key, ended.model_dump_json().encode())])
        if result.succeeded:
            return ended
    return record


# -- suspension: a waiting attempt gives its worker back -------------------------------------------------------


def suspended_on(name: str) -> str:
    """The `waiting` text of an action suspended on condition `name` (what a signal looks for to wake it)."""
    return f"suspended: waiting for condition {name!r}"


async def _wake(store: Store, record: ConditionRecord) -> tuple[list[Compare], list[Put]]:
    """The compare and put that queue the action suspended on `record` for now, to ride in the transaction that
    ends the condition; nothing when the action is not suspended on it (its worker still polls, or it ended)."""
    key = action_key(record.run, record.action)
    kv = await store.get(key)
    if kv is None:
        return [], []
    current = decode_action(kv)
    # Compared even when not suspended: a suspension landing meanwhile makes the signal try again, and wake it.
    if current.phase is not Phase.QUEUED or current.waiting != suspended_on(record.name):
        return [Compare(key, kv.mod_revision)], []
    # Due now, not unset: placement counts a queued action's wait from `not_before`.
    woken = current.model_copy(update={"not_before": time.time(), "waiting": None, "updated_at": time.time()})
    return [Compare(key, kv.mod_revision)], [Put(key, _encode_action(woken))]


async def suspend_attempt(request: web.Request) -> web.Response:
    """End a running attempt without a result (no retry spent): the action queues again, due when its condition
    ends or its durable sleep does. A condition that ended meanwhile is answered instead, and nothing changes."""
    action = _path_action(request)
    body = await read_model(request, SuspendRequest)
    run = await visible_run(request)
    authorize(principal_of(request), Act.REPORT, Target(run.project, run.name, action=action, attempt=body.attempt))
    store = services(request).store
    if body.traces:
        puts = [
            Put(trace_key(run.name, action, encode_trace_key(k)), t.model_dump_json().encode())
            for k, t in body.traces.items()
        ]
        for i in range(0, len(puts), 100):
            await store.txn([], puts[i : i + 100])
    key = action_key(run.name, action)
    for _ in range(_CAS_ATTEMPTS):
        kv = await store.get(key)
        if kv is None:
            raise not_found(f"run {run.name} has no action {action}")
        current = decode_action(kv)
        if current.phase not in (Phase.PLACED, Phase.RUNNING) or current.attempts != body.attempt:
            raise conflict(f"attempt {body.attempt} of {action} is not running", code="stale_attempt")
        compares = [Compare(key, kv.mod_revision)]
        now = time.time()
        if body.condition is not None:
            ckey = condition_key(run.name, action, body.condition)
            ckv = await store.get(ckey)
            if ckv is None:
                raise not_found(f"action {action} has no condition {body.condition!r}")
            record = await _expire_if_due(store, ckey, ConditionRecord.model_validate_json(ckv.value))
            if record.state != "waiting":
                return _json(SuspendAnswer(suspended=False, condition=record))
            compares.append(Compare(ckey, ckv.mod_revision))
            due = record.deadline if record.deadline is not None else now + NEVER
            waiting = suspended_on(body.condition)
        else:
            assert body.until is not None
            due = body.until
            waiting = f"suspended: durable sleep until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(due))}"
        update = {"phase": Phase.QUEUED, "cluster": None, "not_before": due, "waiting": waiting, "updated_at": now}
        suspended = current.model_copy(update=update)
        result = await store.txn(compares, [Put(key, _encode_action(suspended))])
        if result.succeeded:
            return _json(SuspendAnswer(suspended=True))
    raise conflict(f"action {action} is changing too fast to suspend; try again", code="busy")


def _encode_action(action: ActionSummary) -> bytes:
    return action.model_dump_json(exclude={"revision"}).encode()


_ONE = "/api/v1/runs/{run}/actions/{action}/conditions/{name}"
CONDITION_ROUTES: list[Route] = [
    Route(
        "PUT", _ONE, create_condition, "Create a condition of an action (its worker)", ConditionCreate, ConditionRecord
    ),
    Route("GET", _ONE, get_condition, "One condition; ?wait=S long-polls while it waits", None, ConditionRecord),
    Route("GET", "/api/v1/runs/{run}/conditions", list_conditions, "A run's conditions", None, ConditionRecord, True),
    Route(
        "POST",
        "/api/v1/runs/{run}/actions/{action}/suspend",
        suspend_attempt,
        "End a waiting attempt and queue its action for when the wait ends (its worker)",
        SuspendRequest,
        SuspendAnswer,
    ),
    Route(
        "POST",
        "/api/v1/runs/{run}/conditions/{name}/signal",
        signal_condition,
        "Give a waiting condition its value",
        ConditionSignal,
        ConditionRecord,
    ),
]
