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
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

from aiohttp import web

from flyte._wire import ConditionCreate, ConditionRecord, ConditionSignal, ConditionValue, RunSummary
from gateway._api import Route, _json, read_model, services, visible_run
from gateway._auth import principal_of
from gateway._authz import Act, Target, authorize
from gateway._errors import bad_request, conflict, not_found
from gateway.store import Compare, Put, Store

CONDITIONS = "/flyte/conditions/"
MAX_WAIT = 60.0
"""The longest one long poll is held; the waiting worker asks again."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ACTION = re.compile(r"^a(0|[0-9a-f]{20})$")
_CAS_ATTEMPTS = 20


def condition_key(run: str, action: str, name: str) -> str:
    return f"{CONDITIONS}{run}/{action}/{name}"


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
    result = await svc.store.txn([Compare(key, 0)], [Put(key, record.model_dump_json().encode())])
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
    kvs, _ = await services(request).store.range(f"{CONDITIONS}{run.name}/")
    return _json([ConditionRecord.model_validate_json(kv.value) for kv in kvs])


async def signal_condition(request: web.Request) -> web.Response:
    name = _path_name(request)
    body = await read_model(request, ConditionSignal)
    run = await _run_for(request, Act.SIGNAL)
    store = services(request).store
    kvs, _ = await store.range(f"{CONDITIONS}{run.name}/")
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
        result = await store.txn([Compare(key, kv.mod_revision)], [Put(key, signalled.model_dump_json().encode())])
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


_ONE = "/api/v1/runs/{run}/actions/{action}/conditions/{name}"
CONDITION_ROUTES: list[Route] = [
    Route(
        "PUT", _ONE, create_condition, "Create a condition of an action (its worker)", ConditionCreate, ConditionRecord
    ),
    Route("GET", _ONE, get_condition, "One condition; ?wait=S long-polls while it waits", None, ConditionRecord),
    Route("GET", "/api/v1/runs/{run}/conditions", list_conditions, "A run's conditions", None, ConditionRecord, True),
    Route(
        "POST",
        "/api/v1/runs/{run}/conditions/{name}/signal",
        signal_condition,
        "Give a waiting condition its value",
        ConditionSignal,
        ConditionRecord,
    ),
]
