"""A task waits for a condition through a real gateway and agent, and the CLI signals it."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from processes import pid_alive
from test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._wire import ActionSummary, Phase

pytestmark = pytest.mark.timeout(180)

WAITS = """
import flyte

env = flyte.TaskEnvironment("cond_env")


@env.task
async def main(x: int) -> int:
    more = await flyte.new_condition.aio("more", prompt="What should I add?", data_type=int, timeout=600)
    return x + await more.wait.aio()


@env.task
def main_sync(x: int) -> str:
    name = flyte.new_condition("name", prompt="Whose?", data_type=str)
    return f"{name.wait()}:{x}"
"""


def _waiting(rig: Rig, run: str, name: str) -> bool:
    listed = rig.flyte("get", "conditions", run)
    return listed.returncode == 0 and f"{name} " in listed.stdout and "waiting" in listed.stdout


def test_the_cli_signals_a_waiting_task(one_cluster_rig: Rig) -> None:
    rig = one_cluster_rig
    program = rig.load("cond_program", WAITS)
    rig.connect()
    run = flyte.run(program.main, x=1)
    assert_eventually(lambda: _waiting(rig, run.name, "more"), timeout=60)

    wrong = rig.flyte("signal", "condition", run.name, "more", "lots")
    assert wrong.returncode == 1
    assert "condition 'more' takes a int; 'lots' is not one" in wrong.stderr
    unknown = rig.flyte("signal", "condition", run.name, "less", "1")
    assert unknown.returncode == 1
    assert "has no condition 'less'" in unknown.stderr

    signalled = rig.flyte("signal", "condition", run.name, "more", "41")
    assert signalled.returncode == 0, signalled.stderr
    assert run.outputs() == (42,)
    listed = rig.flyte("get", "conditions", run.name)
    assert "more (int) signalled = 41" in listed.stdout


def test_flyte_remote_signals_a_sync_task(one_cluster_rig: Rig) -> None:
    rig = one_cluster_rig
    program = rig.load("cond_sync_program", WAITS)
    rig.connect()
    run = flyte.run(program.main_sync, x=7)
    assert_eventually(lambda: flyte.remote.Condition.get("name", run_name=run.name) is not None, timeout=60)
    condition = flyte.remote.Condition.get("name", run_name=run.name)
    assert condition is not None
    assert (condition.phase, condition.prompt, condition.data_type) == ("waiting", "Whose?", "str")
    condition.signal("ada")
    assert run.outputs() == ("ada:7",)


SUSPENDS = """
import os

import flyte
import flyte.durable

# Waits longer than a second give the worker back (60 s unless this is set).
env = flyte.TaskEnvironment("suspend_env", env_vars={"FLYTE_SUSPEND_AFTER": "1"}, resources=flyte.Resources(cpu=1))


@flyte.trace
async def before() -> int:
    return 1


@env.task
async def approve(x: int, pids: str) -> int:
    with open(pids, "a") as out:
        out.write(f"{os.getpid()}\\n")
    first = await before()
    ok = await flyte.new_condition.aio("ok", prompt="Go on?", data_type=bool)
    return x + first if await ok.wait.aio() else -1


@env.task
async def nap(seconds: float) -> float:
    started = await flyte.durable.time.aio()
    await flyte.durable.sleep.aio(seconds)
    return await flyte.durable.time.aio() - started


@env.task
def nap_sync(seconds: float) -> float:
    started = flyte.durable.time()
    flyte.durable.sleep(seconds)
    return flyte.durable.time() - started
"""


def _root(run: str) -> ActionSummary:
    return next(a for a in call_sync(client_for().list_actions(run)) if a.parent is None)


def _free_cpu() -> float:
    return sum(c.free.get("cpu", 0.0) for c in call_sync(client_for().list_clusters()))


def test_a_suspended_condition_holds_no_worker_and_the_signal_resumes_it(one_cluster_rig: Rig) -> None:
    rig = one_cluster_rig
    program = rig.load("suspend_program", SUSPENDS)
    rig.connect()
    idle = _free_cpu()
    pids = rig.cwd.parent / "suspend-pids.txt"  # outside the program's folder: it is bundled whole
    run = flyte.run(program.approve, x=41, pids=str(pids))
    assert_eventually(lambda: (_root(run.name).waiting or "").startswith("suspended"), timeout=60)
    (worker,) = (int(line) for line in pids.read_text().split())
    assert_eventually(lambda: not pid_alive(worker), timeout=30)
    root = _root(run.name)
    assert (root.phase, root.attempts, root.cluster) == (Phase.QUEUED, 1, None)
    assert root.waiting == "suspended: waiting for condition 'ok'"
    # The agent's next heartbeat shows its cpu free again: no worker waits for the answer.
    assert_eventually(lambda: _free_cpu() == idle, timeout=30)

    signalled = rig.flyte("signal", "condition", run.name, "ok", "yes")
    assert signalled.returncode == 0, signalled.stderr
    assert run.outputs() == (42,)
    root = _root(run.name)
    assert root.attempts == 2, "the signal placed it again; the second attempt replayed up to the wait"
    assert (root.user_failures, root.system_failures) == (0, 0), "a suspension is not a retry"


@pytest.mark.parametrize("task", ["nap", "nap_sync"])
def test_a_long_durable_sleep_holds_no_worker(one_cluster_rig: Rig, task: str) -> None:
    rig = one_cluster_rig
    program = rig.load(f"{task}_program", SUSPENDS)
    rig.connect()
    run = flyte.run(getattr(program, task), seconds=4.0)
    assert_eventually(lambda: (_root(run.name).waiting or "").startswith("suspended: durable sleep"), timeout=60)
    (slept,) = run.outputs()
    assert 4.0 <= slept < 30.0, "durable time is the first attempt's, and the sleep ended on time"
    root = _root(run.name)
    assert (root.attempts, root.user_failures, root.system_failures) == (2, 0, 0)


def test_the_action_page_signals_a_condition(one_cluster_rig: Rig) -> None:
    import shutil

    import yaml
    from playwright.sync_api import expect, sync_playwright
    from prerequisites import CHROMIUM_INSTALL, on_path, require

    require(on_path("chromium"), CHROMIUM_INSTALL)
    rig = one_cluster_rig
    program = rig.load("cond_ui_program", WAITS)
    rig.connect()
    run = flyte.run(program.main, x=1)
    assert_eventually(lambda: _waiting(rig, run.name, "more"), timeout=60)
    admin = yaml.safe_load((rig.cwd / ".flyte" / "config.yaml").read_text())["admin"]
    endpoint = admin["endpoint"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            page = browser.new_page()
            page.goto(f"{endpoint}/login")
            page.fill("#token", admin["api_key"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{endpoint}/runs")
            page.goto(f"{endpoint}/runs/{run.name}")
            field = page.locator("#condition-value-more")
            expect(field).to_be_visible(timeout=30_000)
            expect(page.locator("#conditions")).to_contain_text("What should I add?")
            field.fill("2.5")
            page.click("#conditions button[type=submit]")
            expect(page.locator("#condition-error-more")).to_have_text(
                "condition 'more' takes a int; 2.5 is a float", timeout=10_000
            )
            field.fill("9")
            page.click("#conditions button[type=submit]")
            expect(page.locator("#conditions")).to_contain_text("Value: 9", timeout=10_000)
        finally:
            browser.close()
    assert run.outputs() == (10,)


HELD = """
import flyte

env = flyte.TaskEnvironment("held_env", resources=flyte.Resources(cpu=1))


@env.task
async def main() -> str:
    ok = await flyte.new_condition.aio("ok", data_type=str)
    return f"{flyte.ctx().attempt}:{await ok.wait.aio()}"
"""


def test_a_wait_survives_its_agent_being_killed(tmp_path: Path) -> None:
    rig = start_rig(tmp_path / "held", FLYTE_LEASE_TTL="3")
    try:
        program = rig.load("held_program", HELD)
        rig.connect()
        run = flyte.run(program.main)
        assert_eventually(lambda: _waiting(rig, run.name, "ok"), timeout=60)
        victim = _root(run.name).cluster
        assert victim is not None, "the worker holds its slot while it waits (60 s before it suspends)"
        os.kill(rig.pids()[f"agent-{victim}"], signal.SIGKILL)
        # The lost cluster's work is placed again; the new attempt finds the condition as it was, still waiting.
        assert_eventually(lambda: _root(run.name).attempts == 2 and _root(run.name).cluster not in (None, victim), 60)
        assert len(list(flyte.remote.Condition.listall(run_name=run.name))) == 1
        signalled = rig.flyte("signal", "condition", run.name, "ok", "still here")
        assert signalled.returncode == 0, signalled.stderr
        assert run.outputs() == ("2:still here",)
    finally:
        rig.flyte("rig", "down")


HOOKED = """
import flyte

env = flyte.TaskEnvironment("cond_hook_env")


@env.task
async def main(hook: str) -> str:
    approval = await flyte.new_condition.aio(
        "approval",
        prompt="Ship it?",
        webhook=flyte.ConditionWebhook(hook, payload={"text": "Answer at {callback_uri}"}),
    )
    return "shipped" if await approval.wait.aio() else "held"
"""


def test_a_conditions_webhook_reaches_a_receiver_that_answers_through_its_callback(one_cluster_rig: Rig) -> None:
    received: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rig = one_cluster_rig
        program = rig.load("cond_hook_program", HOOKED)
        rig.connect()
        run = flyte.run(program.main, hook=f"http://127.0.0.1:{server.server_port}/approvals")
        assert_eventually(lambda: bool(received), timeout=60)
        (message,) = received
        callback = message["text"].removeprefix("Answer at ")
        assert callback.endswith(f"/api/v1/runs/{run.name}/conditions/approval/signal")
        # The receiver (a chat bot, say) answers through the callback with a token of its own.
        token = yaml.safe_load((rig.cwd / ".flyte" / "config.yaml").read_text())["admin"]["api_key"]
        answer = urllib.request.Request(
            callback,
            data=json.dumps({"value": True}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(answer, timeout=10) as response:
            assert response.status == 200
        assert run.outputs() == ("shipped",)
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
