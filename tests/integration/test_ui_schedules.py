"""The UI shows schedules and notifications, in a real browser (Debian's chromium driven by playwright) against a
gateway process: a task's two triggers on the tasks page and the task's page, with their state; a run's
notification deliveries on the run's page."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api, task_spec
from playwright.sync_api import Page, expect, sync_playwright
from prerequisites import CHROMIUM_INSTALL, on_path, require
from processes import GatewayProcess
from waiting import eventually_async

import flyte.notify as notify

pytestmark = pytest.mark.timeout(120)

TRIGGERS = [
    {"name": "nightly", "automation": {"kind": "cron", "expression": "0 2 * * *", "timezone": "Europe/Paris"}},
    {"name": "often", "automation": {"kind": "fixed_rate", "interval_minutes": 5}, "auto_activate": False},
]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess("memory", tmp_path / "home").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def deployed(gateway: GatewayProcess) -> GatewayProcess:
    """Before the browser starts: playwright's sync API holds an event loop of its own on this thread."""
    asyncio.run(_deploy(gateway))
    return gateway


async def _deploy(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as session:
        api = Api(gateway.endpoint, session)
        status, body = await api.deploy("ui_sched", tasks=[{**task_spec("ui_sched", params=()), "triggers": TRIGGERS}])
        assert status == 201, body

        async def recorded() -> bool:
            # The scheduler makes the triggers' records on its first pass after the deployment.
            status, listed = await api.call("GET", "/api/v1/triggers")
            return status == 200 and len(listed) == 2

        await eventually_async(recorded, within=20)


@pytest.fixture
def page() -> Iterator[Page]:
    require(on_path("chromium"), CHROMIUM_INSTALL)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _log_in(page: Page, gateway: GatewayProcess) -> None:
    page.goto(f"{gateway.endpoint}/login")
    page.fill("#token", gateway.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway.endpoint}/runs")


def test_the_tasks_pages_list_triggers_with_their_state(deployed: GatewayProcess, page: Page) -> None:
    gateway = deployed
    _log_in(page, gateway)
    page.click("[data-nav=tasks]")
    nightly = page.locator("#triggers tr[data-trigger='ui_sched.main/nightly']")
    expect(nightly).to_contain_text("cron 0 2 * * * (Europe/Paris)")
    expect(nightly.locator(".badge")).to_have_text(["active"])
    often = page.locator("#triggers tr[data-trigger='ui_sched.main/often']")
    expect(often).to_contain_text("every 5 min")
    expect(often.locator(".badge")).to_have_text(["inactive"])
    page.click("#tasks a[href='/tasks/ui_sched.main']")
    expect(page.locator("#triggers tbody tr")).to_have_count(2)


async def _notified_run(gateway: GatewayProcess) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as session:
        api = Api(gateway.endpoint, session)
        # The gateway's own health endpoint stands in for a webhook receiver.
        rule = notify.Webhook(on_phase="aborted", url=f"{gateway.endpoint}/healthz", method="GET")
        body = {
            "project": "default",
            "domain": "development",
            "task": "ui_sched.main",
            "notifications": [rule.to_wire().model_dump(mode="json")],
        }
        status, run = await api.call("POST", "/api/v1/runs", body)
        assert status == 201, run
        status, _ = await api.call("POST", f"/api/v1/runs/{run['name']}/abort", {"reason": "ui test"})
        assert status == 200

        async def delivered() -> bool:
            _, record = await api.call("GET", f"/api/v1/runs/{run['name']}/notifications")
            return [d["status"] for d in record["deliveries"]] == ["delivered"]

        await eventually_async(delivered, within=20)
        return str(run["name"])


@pytest.fixture
def notified(deployed: GatewayProcess) -> tuple[GatewayProcess, str]:
    return deployed, asyncio.run(_notified_run(deployed))


def test_a_runs_page_shows_its_notification_deliveries(notified: tuple[GatewayProcess, str], page: Page) -> None:
    gateway, run = notified
    _log_in(page, gateway)
    page.goto(f"{gateway.endpoint}/runs/{run}")
    deliveries = page.locator("#notifications li")
    expect(deliveries).to_have_count(1)
    expect(deliveries).to_contain_text(f"webhook to {gateway.endpoint}")
    expect(deliveries.locator(".badge")).to_have_text(["delivered"])
