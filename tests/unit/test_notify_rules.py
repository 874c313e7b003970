"""`flyte.notify` rules as values, what the gateway renders from them, and the notifier resuming a delivery left
pending by a gateway that stopped (on the embedded store, against a local webhook receiver)."""

from __future__ import annotations

import datetime

import pytest
from aiohttp import web
from http_receiver import http_receiver
from waiting import eventually_async

import flyte
import flyte.notify as notify
from flyte._run_state import RunOptions
from flyte._wire import ErrorInfo, NotificationDelivery, Phase, RunNotifications, RunSummary
from gateway._keys import DELIVERIES, NOTIFY_RULES, run_key
from gateway._notify import Notifier, render, run_phase, target
from gateway.store import Store


def _run(phase: Phase, error: ErrorInfo | None = None) -> RunSummary:
    return RunSummary(name="r123", task="e.main", phase=phase, project="p", domain="d", created_at=0.0, error=error)


def test_rules_take_flyte2_phases_and_check_their_fields() -> None:
    class ActionPhase:  # stands for Flyte 2's flyte.models.ActionPhase members
        name = "TIMED_OUT"

    rule = notify.Webhook(on_phase=["FAILED", ActionPhase(), "failed"], url="https://example.com/hook")
    assert rule.on_phase == ("failed", "timed_out")
    assert rule.to_wire().body == {
        "run": "{{.Run.Name}}",
        "project": "{{.Run.Project}}",
        "domain": "{{.Run.Domain}}",
        "phase": "{{.Phase}}",
        "error": "{{.Error}}",
    }
    with pytest.raises(ValueError, match="must be one of succeeded, failed, aborted, timed_out"):
        notify.Slack(on_phase="running", webhook_url="https://hooks.slack.com/x")
    with pytest.raises(ValueError, match="recipient"):
        notify.Email(on_phase="failed", recipients=[])
    with pytest.raises(ValueError, match="recipients"):
        notify.Email(on_phase="failed", recipients=["not an address"])
    with pytest.raises(ValueError, match="url"):
        notify.Webhook(on_phase="failed", url="file:///etc/passwd")
    with pytest.raises(NotImplementedError, match="issue 20"):
        notify.NamedRule("oncall")
    with pytest.raises(ValueError, match=r"notifications= takes flyte\.notify rules"):
        flyte.with_runcontext(notifications=["slack"])


def test_rules_travel_with_runs_and_triggers() -> None:
    slack = notify.Slack(on_phase="failed", webhook_url="https://hooks.slack.com/x")
    context = flyte.with_runcontext(notifications=slack)
    options: RunOptions = context.options
    assert [r.kind for r in options.notifications] == ["slack"]
    env = flyte.TaskEnvironment("notify_unit")

    @env.task(triggers=flyte.Trigger.daily("day", notifications=[slack]))
    async def daily(day: datetime.datetime) -> None: ...

    from flyte._deploy import task_spec

    [trigger] = task_spec(daily).triggers
    assert [r.kind for r in trigger.notifications] == ["slack"]


def test_what_the_gateway_renders() -> None:
    timed_out = ErrorInfo(error_type="TaskTimeoutError", code="timeout", kind="user", message="took 5 s")
    assert run_phase(_run(Phase.FAILED, timed_out)) == "timed_out"
    assert run_phase(_run(Phase.ABORTED)) == "aborted"
    assert run_phase(_run(Phase.RUNNING)) is None
    run = _run(Phase.FAILED, timed_out)
    template = {"t": ["{{.Run.Name}} {{ .Phase }} in {{.Run.Project}}/{{.Run.Domain}}: {{.Error}}", 3], "u": "{{.X}}"}
    assert render(template, run, "timed_out") == {"t": ["r123 TIMED_OUT in p/d: took 5 s", 3], "u": "{{.X}}"}
    hook = notify.Webhook(on_phase="failed", url="https://user:pw@hooks.example.com/T0/B0/secret?k=v").to_wire()
    assert target(hook) == "https://hooks.example.com"
    email = notify.Email(on_phase="failed", recipients=["a@example.com", "b@example.com"]).to_wire()
    assert target(email) == "a@example.com, b@example.com"


async def test_a_pending_delivery_is_sent_when_the_notifier_starts_again(store: Store) -> None:
    received: list[object] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    async with http_receiver(hook) as base:
        url = f"{base}/hook"
        # As a gateway leaves it when it stops after noting the deliveries and before sending them.
        rule = notify.Webhook(on_phase="aborted", url=url, body={"phase": "{{.Phase}}"}).to_wire()
        await store.put(run_key("r123"), _run(Phase.ABORTED).model_dump_json().encode())
        await store.put(f"{NOTIFY_RULES}r123", f'{{"notifications": [{rule.model_dump_json()}]}}'.encode())
        pending = NotificationDelivery(rule=0, kind="webhook", target=target(rule), phase="aborted", status="pending")
        runs = RunNotifications(run="r123", deliveries=[pending])
        await store.put(f"{DELIVERIES}r123", runs.model_dump_json().encode())
        notifier = Notifier(store)
        await notifier.start()
        try:

            async def delivered() -> bool:
                kv = await store.get(f"{DELIVERIES}r123")
                assert kv is not None
                return RunNotifications.model_validate_json(kv.value).deliveries[0].status == "delivered"

            await eventually_async(delivered, within=10)
            assert received == [{"phase": "ABORTED"}]
            assert await store.get(f"{NOTIFY_RULES}r123") is None, "done: the rules are dropped"
        finally:
            await notifier.stop()
