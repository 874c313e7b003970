"""The trigger API: list a project's triggers with their state, activate or deactivate one, and the scheduler's state.

Reading needs the `read` act on the project, changing a trigger the `deploy` act (whoever deploys the schedule may
switch it), both decided by `gateway._authz.authorize`. The scheduler itself (gateway/_scheduler.py) runs in the
gateway's background from startup to cleanup.
"""

from __future__ import annotations

import re

from aiohttp import web

from flyte._wire import TriggerRecord
from gateway._api import SERVICES, Route, _json, _scope, allow
from gateway._authz import Act, Target
from gateway._errors import bad_request
from gateway._scheduler import Scheduler

SCHEDULER = web.AppKey("scheduler", Scheduler)

_TRIGGER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TASK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\.[A-Za-z_][A-Za-z0-9_]{0,127}$")


def add_scheduler(app: web.Application) -> None:
    """Make the app's scheduler; the elected leader runs it (`gateway._app`), every replica answers its API."""
    svc = app[SERVICES]
    app[SCHEDULER] = Scheduler(svc.store, svc.registry, svc.runs, events=svc.metrics.events)


async def list_triggers(request: web.Request) -> web.Response:
    project, domain = _scope(request)
    allow(request, Act.READ, Target(project))
    return _json(await request.app[SCHEDULER].list(project, domain))


async def _set_active(request: web.Request, active: bool) -> web.Response:
    project, domain = _scope(request)
    allow(request, Act.DEPLOY, Target(project))
    name = request.match_info["trigger"]
    if not _TRIGGER.match(name):
        raise bad_request(f"{name!r} is not a trigger name")
    task = request.query.get("task")
    if task is not None and not _TASK.match(task):
        raise bad_request(f"query parameter task={task!r} must be a task name (<env>.<function>)")
    return _json(await request.app[SCHEDULER].set_active(project, domain, task, name, active))


async def activate_trigger(request: web.Request) -> web.Response:
    return await _set_active(request, True)


async def deactivate_trigger(request: web.Request) -> web.Response:
    return await _set_active(request, False)


async def scheduler_state(request: web.Request) -> web.Response:
    allow(request, Act.READ, Target(_scope(request)[0]))
    scheduler = request.app[SCHEDULER]
    return web.json_response({"running": scheduler.running, "passes": scheduler.ticks})


TRIGGER_ROUTES: list[Route] = [
    Route(
        "GET",
        "/api/v1/triggers",
        list_triggers,
        "The project's triggers (schedules of its latest deployed tasks), with their state",
        answer=TriggerRecord,
        many=True,
    ),
    Route(
        "POST",
        "/api/v1/triggers/{trigger}/activate",
        activate_trigger,
        "Activate a trigger (?task= when several tasks have one of that name); it fires from its next time on",
        answer=TriggerRecord,
    ),
    Route(
        "POST",
        "/api/v1/triggers/{trigger}/deactivate",
        deactivate_trigger,
        "Deactivate a trigger: it starts no runs until activated",
        answer=TriggerRecord,
    ),
    Route("GET", "/api/v1/scheduler", scheduler_state, "Whether this gateway's scheduler runs, and its passes"),
]
