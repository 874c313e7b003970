"""The web UI in a real browser: Debian's chromium driven by playwright, against the two-cluster rig.

A run is followed from the runs list to its page, whose tree turns to succeeded as the watch stream reports it;
the failed child shows its remote traceback, a child's logs and the trace open; clusters and tasks show what the
rig registered. Logging in: no session leads to the login page, a bad token is refused, a one-time link works
once. Screenshots go to the test's artifacts, and to docs/screenshots/ when FLYTE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from prerequisites import CHROMIUM_INSTALL, on_path, require
from test_rig import Rig, start_rig
from waiting import assert_eventually

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
PHASE_TIMEOUT = 60_000
"""Milliseconds a page may take to show a phase: cold workers start on a shared 2-core machine."""

pytestmark = pytest.mark.timeout(240)

PROGRAM = """
import asyncio
import os

import flyte

east = flyte.TaskEnvironment("ui_demo_east", placement=flyte.Placement(clusters=["us-east"]))
env = flyte.TaskEnvironment(
    "ui_demo", resources=flyte.Resources(cpu=1), placement=flyte.Placement(clusters=["eu-west"])
)
env.add_dependency(east)


@east.task
async def square(x: int) -> int:
    print(f"squaring {x}", flush=True)
    return x * x


@env.task
async def flaky(x: int) -> int:
    raise ValueError(f"no good value for {x}")


@env.task
async def main(n: int, gate: str) -> int:
    # Held open until the test has the page on screen, so the page sees the run change.
    while not os.path.exists(gate):
        await asyncio.sleep(0.05)
    squares = await asyncio.gather(*(square(i) for i in range(n)))
    try:
        await flaky(n)
    except ValueError as error:
        print("flaky failed:", error, flush=True)
    return sum(squares)


if __name__ == "__main__":
    import sys

    flyte.init_from_config()
    run = flyte.with_runcontext(labels={"suite": "ui"}).run(main, n=3, gate=sys.argv[1])
    print(run.name)
    print(run.url)
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("ui-rig"))
    try:
        yield started
    finally:
        started.flyte("rig", "down")


@pytest.fixture(scope="module")
def endpoint(rig: Rig) -> str:
    return str(_config(rig)["endpoint"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(on_path("chromium"), CHROMIUM_INSTALL)
    chromium = shutil.which("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def _fresh_page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own: no cookies, so no session."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with _fresh_page(browser) as fresh:
        yield fresh


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    path = tmp_path / "artifacts"
    path.mkdir()
    return path


def _config(rig: Rig) -> dict[str, str]:
    config = yaml.safe_load((rig.cwd / ".flyte" / "config.yaml").read_text())
    return {"endpoint": config["admin"]["endpoint"], "token": config["admin"]["api_key"]}


def _screenshot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / name, full_page=True)
    if os.environ.get("FLYTE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifacts / name, SCREENSHOTS / name)


def _log_in(page: Page, rig: Rig, endpoint: str) -> None:
    page.goto(f"{endpoint}/login")
    page.fill("#token", _config(rig)["token"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{endpoint}/runs")


def _start_program(rig: Rig, gate: Path) -> subprocess.CompletedProcess[str]:
    program = rig.cwd / "ui_program.py"
    program.write_text(PROGRAM)
    started = subprocess.run(
        [sys.executable, str(program), str(gate)], cwd=rig.cwd, env=rig.env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    return started


def _text(endpoint: str, path: str, headers: dict[str, str]) -> str:
    with urllib.request.urlopen(urllib.request.Request(endpoint + path, headers=headers), timeout=10) as response:
        return str(response.read().decode())


def _status(endpoint: str, path: str, headers: dict[str, str], body: dict[str, str] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(endpoint + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_a_run_is_followed_live_from_the_runs_list_to_its_tree(
    rig: Rig, endpoint: str, page: Page, artifacts: Path
) -> None:
    gate = rig.cwd / "gate"
    _log_in(page, rig, endpoint)
    expect(page.locator("#stream-state")).to_have_text("live")

    # The program runs as its own process (playwright's sync API holds this thread's event loop).
    started = _start_program(rig, gate)
    name, url = started.stdout.split()[-2:]
    row = page.locator(f"#runs tr[data-run='{name}']")
    expect(row).to_be_visible(timeout=PHASE_TIMEOUT)
    expect(row.locator(".phase")).to_have_text("running", timeout=PHASE_TIMEOUT)
    page.select_option("#filter-phase", "succeeded")
    expect(row).to_have_count(0)
    page.select_option("#filter-phase", "")
    expect(row).to_be_visible()

    page.goto(url)  # Run.url is the run's page
    root = page.locator("#tree button.node[data-action='a0']")
    expect(root).to_have_attribute("data-phase", "running", timeout=PHASE_TIMEOUT)
    gate.touch()
    expect(root).to_have_attribute("data-phase", "succeeded", timeout=PHASE_TIMEOUT)
    expect(page.locator(".run-head .phase")).to_have_text("succeeded", timeout=PHASE_TIMEOUT)
    expect(page.locator("#tree button.node")).to_have_count(5)
    expect(page.locator("#tree button.node[data-phase='succeeded']")).to_have_count(4)
    expect(page.locator("#timeline rect.bar")).to_have_count(5)
    expect(page.locator("#timeline .lane-label")).to_have_text(["eu-west", "us-east"])
    expect(page.locator("#detail pre.value").last).to_have_text("5")  # the root's output: 0 + 1 + 4
    _screenshot(page, artifacts, "run.png")

    page.click("#tree button.node[data-phase='failed']")
    expect(page.locator("#error")).to_contain_text("ValueError")
    expect(page.locator("#error .traceback")).to_contain_text('raise ValueError(f"no good value for {x}")')
    _screenshot(page, artifacts, "run-error.png")

    square = page.locator("#tree button.node", has_text="ui_demo_east.square").first
    action = square.get_attribute("data-action")
    assert action is not None
    # The agent ships a worker's output in batches: the page shows it once the gateway has it.
    assert_eventually(lambda: "squaring" in rig.flyte("get", "logs", name, action).stdout, timeout=30)
    square.click()
    page.click("#detail-tab-logs")
    expect(page.locator("#logs")).to_contain_text("squaring")

    page.click("#detail-tab-placement")
    # The square's environment asks for us-east: the decision shows it chosen, and why eu-west was not.
    expect(page.locator("#placement tr.chosen")).to_contain_text("us-east")
    expect(page.locator("#placement tr", has_text="eu-west")).not_to_have_class("chosen")
    _screenshot(page, artifacts, "placement.png")

    # Workers export their spans in batches too: wait until the gateway holds the root task's span.
    token = {"Authorization": f"Bearer {_config(rig)['token']}"}
    assert_eventually(lambda: "task ui_demo.main" in _text(endpoint, f"/api/v1/runs/{name}/trace", token), timeout=30)
    page.click("#tab-trace")
    expect(page.locator("#waterfall")).to_contain_text("task ui_demo.main")
    expect(page.locator("#waterfall .legend")).to_contain_text("flyte-worker")
    page.locator("#waterfall .span-row", has_text="task ui_demo.main").click()
    expect(page.locator("#span-detail")).to_contain_text("flyte-worker")
    _screenshot(page, artifacts, "trace.png")

    page.goto(f"{endpoint}/runs?label=suite%3Dui")
    expect(page.locator("#runs tr[data-run]")).to_have_count(1)
    expect(row.locator(".phase")).to_have_text("succeeded")
    _screenshot(page, artifacts, "runs.png")


def test_the_abort_button_stops_a_running_run(rig: Rig, endpoint: str, page: Page, artifacts: Path) -> None:
    _log_in(page, rig, endpoint)
    _, url = _start_program(rig, rig.cwd / "never-opened").stdout.split()[-2:]
    page.goto(url)
    expect(page.locator("#tree button.node[data-action='a0']")).to_have_attribute(
        "data-phase", "running", timeout=PHASE_TIMEOUT
    )
    page.once("dialog", lambda dialog: dialog.accept("stopped from the browser test"))
    page.click("#abort")
    expect(page.locator(".run-head .phase")).to_have_text("aborted", timeout=PHASE_TIMEOUT)
    expect(page.locator(".run-head")).to_contain_text("stopped from the browser test")
    expect(page.locator("#abort")).to_have_count(0)


def test_the_clusters_page_follows_capacity_as_actions_start_and_end(
    rig: Rig, endpoint: str, page: Page, browser: Browser
) -> None:
    _log_in(page, rig, endpoint)
    page.goto(f"{endpoint}/clusters")
    cpu = page.locator("article.cluster[data-cluster='eu-west'] table.usage tr", has_text="cpu")
    # Nothing holds eu-west's CPU once earlier tests' runs have ended (the aborted one included).
    expect(cpu).to_contain_text("0 / 2 used", timeout=PHASE_TIMEOUT)
    gate = rig.cwd / "capacity-gate"
    _start_program(rig, gate)
    expect(cpu).to_contain_text("1 / 2 used", timeout=PHASE_TIMEOUT)
    gate.touch()
    expect(cpu).to_contain_text("0 / 2 used", timeout=PHASE_TIMEOUT)


def test_clusters_and_tasks_show_what_the_rig_registered(rig: Rig, endpoint: str, page: Page, artifacts: Path) -> None:
    _log_in(page, rig, endpoint)
    page.click("[data-nav=clusters]")
    for name in ("us-east", "eu-west"):
        card = page.locator(f"article.cluster[data-cluster='{name}']")
        expect(card.locator(".badge")).to_have_text(["healthy"])
        expect(card).to_contain_text("cpu")
        expect(card).to_contain_text("8.0 GiB")
    _screenshot(page, artifacts, "clusters.png")
    us_east = page.locator("article.cluster[data-cluster='us-east']")
    assert rig.flyte("cluster", "cordon", "us-east", "--reason", "kernel upgrade").returncode == 0
    expect(us_east.locator(".badge")).to_have_text(["healthy", "cordoned"])
    expect(us_east).to_contain_text("kernel upgrade")
    assert rig.flyte("cluster", "uncordon", "us-east").returncode == 0
    expect(us_east.locator(".badge")).to_have_text(["healthy"])

    program = rig.cwd / "ui_tasks_program.py"
    program.write_text(PROGRAM.replace('"ui_demo"', '"ui_tasks"'))
    deployed = rig.flyte("deploy", str(program), "ui_tasks")
    assert deployed.returncode == 0, deployed.stderr
    page.click("[data-nav=tasks]")
    expect(page.locator("#tasks tr[data-task='ui_tasks.main']")).to_be_visible()
    page.click("#tasks a[href='/tasks/ui_tasks.main']")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    expect(page.locator("#versions")).to_contain_text("main(n: int, gate: str) -> int")


def test_a_page_left_while_it_loads_does_not_draw_over_the_next(rig: Rig, endpoint: str, page: Page) -> None:
    """A click on "Clusters" while the runs page is still loading (right after logging in, say): the runs page,
    once loaded, must not replace the clusters page the user moved to."""
    _log_in(page, rig, endpoint)

    def held_until_released(route: Route) -> None:
        # The runs page's module, held by a top-level await until the test releases it.
        module = route.fetch().text()
        route.fulfill(
            body="await new Promise((go) => { window.releaseRuns = go; });\n" + module,
            content_type="text/javascript",
        )

    page.route("**/ui/pages/runs.js", held_until_released)
    page.reload()  # a new document: its first page, the runs page, loads its module again
    page.wait_for_function("() => window.releaseRuns !== undefined")
    page.click("[data-nav=clusters]")
    expect(page.locator("article.cluster[data-cluster='us-east']")).to_be_visible()
    # Released, and loaded: the runs page's render would have run once this import and a turn after it are done.
    page.evaluate(
        "() => { window.releaseRuns(); return import('/ui/pages/runs.js')"
        ".then(() => new Promise((done) => setTimeout(done, 0))); }"
    )
    expect(page.locator("h1")).to_have_text("Clusters")
    expect(page.locator("#runs")).to_have_count(0)
    expect(page.locator("article.cluster[data-cluster='us-east']")).to_be_visible()


def test_without_a_session_the_ui_asks_for_a_token_and_refuses_a_bad_one(
    rig: Rig, endpoint: str, page: Page, artifacts: Path
) -> None:
    page.goto(f"{endpoint}/runs")
    page.wait_for_url(f"{endpoint}/login?next=%2Fruns")
    page.fill("#token", "fft_not-a-token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That token is not valid.")
    _screenshot(page, artifacts, "login.png")

    token = _config(rig)["token"]
    cookie = {"Cookie": f"flyte_session={token}"}
    assert _status(endpoint, "/api/v1/clusters", cookie) == 200
    assert _status(endpoint, "/api/v1/clusters", {"Cookie": "flyte_session=fft_not-a-token"}) == 401
    # Another site's page cannot use a browser's session, even where SameSite is not enforced.
    assert _status(endpoint, "/api/v1/clusters", {**cookie, "Origin": "http://elsewhere.example"}) == 403
    # Nor log a browser in to a token of its choosing.
    login = {"Content-Type": "application/json", "Origin": "http://elsewhere.example"}
    assert _status(endpoint, "/ui/session", login, {"token": token}) == 403
    assert _status(endpoint, "/ui/session", {**login, "Origin": endpoint}, {"token": token}) == 200


def test_a_one_time_login_link_logs_in_once(rig: Rig, endpoint: str, browser: Browser) -> None:
    printed = rig.flyte("rig", "login")
    assert printed.returncode == 0, printed.stderr
    link = next(word for word in printed.stdout.split() if "/login?code=" in word)
    with _fresh_page(browser) as page:
        page.goto(link)
        page.wait_for_url(f"{endpoint}/runs")
        expect(page.locator("#session")).to_contain_text("admin")
        session = json.loads(page.evaluate("fetch('/ui/session').then((r) => r.text())"))
        assert session["scopes"] == ["admin"]
        cookie = {"Cookie": f"flyte_session={page.context.cookies()[0]['value']}"}
        assert _status(endpoint, "/api/v1/clusters", cookie) == 200
        # Logging out revokes the session the link made (after the gateway's few seconds of token caching).
        page.click("#session button")
        page.wait_for_url(f"{endpoint}/login")
        assert_eventually(lambda: _status(endpoint, "/api/v1/clusters", cookie) == 401, timeout=15, interval=0.5)
    with _fresh_page(browser) as page:
        page.goto(link)
        page.wait_for_url(f"{endpoint}/login?error=used")
        expect(page.locator("#login-error")).to_contain_text("already used")


REPORT_PROGRAM = '''
import flyte
import flyte.report

env = flyte.TaskEnvironment("ui_report")

# Tries what a hostile report would: read the session cookie, call the API as the logged-in user.
PROBE = """
<p id="probe">probing</p>
<script>
(async () => {
  let cookie;
  try { cookie = document.cookie ? "read the cookie" : "no cookie"; } catch (e) { cookie = "cookie blocked"; }
  let api;
  try {
    const answer = await fetch("/api/v1/clusters", { credentials: "include" });
    api = "api answered " + answer.status;
  } catch (e) {
    api = "api blocked";
  }
  document.getElementById("probe").textContent = cookie + ", " + api;
})();
</script>
"""


@env.task(report=True)
async def main() -> str:
    flyte.report.log("<h2 id='greeting'>Hello from the report</h2>")
    flyte.report.log(PROBE)
    return "reported"


if __name__ == "__main__":
    flyte.init_from_config()
    run = flyte.run(main)
    print(run.name)
    print(run.url)
'''


def _headers(endpoint: str, path: str, headers: dict[str, str]) -> dict[str, str]:
    with urllib.request.urlopen(urllib.request.Request(endpoint + path, headers=headers), timeout=10) as response:
        return dict(response.headers)


def _head_then_get(endpoint: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, int, bytes]:
    """A HEAD and then a GET of `path` on one kept-alive connection, as a browser sends them: both statuses, bodies."""
    address = urllib.parse.urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("HEAD", path, headers=headers)
        head = connection.getresponse()
        head_body = head.read()
        connection.request("GET", path, headers=headers)
        get = connection.getresponse()
        return head.status, head_body, get.status, get.read()
    finally:
        connection.close()


def test_an_actions_report_shows_sandboxed_on_its_page(rig: Rig, endpoint: str, page: Page, artifacts: Path) -> None:
    program = rig.cwd / "ui_report_program.py"
    program.write_text(REPORT_PROGRAM)
    started = subprocess.run(
        [sys.executable, str(program)], cwd=rig.cwd, env=rig.env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    name, url = started.stdout.split()[-2:]
    _log_in(page, rig, endpoint)
    page.goto(f"{url}?detail=report")
    expect(page.locator("#tree button.node[data-action='a0']")).to_have_attribute(
        "data-phase", "succeeded", timeout=PHASE_TIMEOUT
    )
    page.click("#detail-tab-report")
    report = page.frame_locator("#report")
    # The frame loads the report in a request of its own: on a busy machine that outlasts expect's default 5 s.
    expect(report.locator("#greeting")).to_have_text("Hello from the report", timeout=PHASE_TIMEOUT)
    # The page's scripts run, but in an opaque origin: no cookie, and the API neither answers them nor is read.
    expect(report.locator("#probe")).to_have_text("cookie blocked, api blocked", timeout=PHASE_TIMEOUT)
    expect(page.locator("#report")).to_have_attribute("sandbox", "allow-scripts")
    _screenshot(page, artifacts, "report.png")

    path = f"/api/v1/runs/{name}/actions/a0/report"
    # Opened on its own, outside the frame, the gateway's CSP sandboxes it all the same.
    page.goto(endpoint + path)
    expect(page.locator("#probe")).to_have_text("cookie blocked, api blocked")

    admin = {"Authorization": f"Bearer {_config(rig)['token']}"}
    headers = _headers(endpoint, path, admin)
    assert headers["Content-Security-Policy"] == "sandbox allow-scripts"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"].startswith("text/html")
    # The UI asks with a HEAD before it shows the frame, whose GET the browser then sends on the same connection:
    # a HEAD answer with bytes after its headers would be read as the GET's (an invalid response, an empty frame).
    head_status, head_body, get_status, page_body = _head_then_get(endpoint, path, admin)
    assert (head_status, head_body) == (200, b"")
    assert get_status == 200
    assert b"Hello from the report" in page_body
    # Another project's token learns nothing about the run, nor whether it has a report.
    request = urllib.request.Request(
        endpoint + "/api/v1/tokens",
        data=json.dumps({"scopes": ["run"], "projects": ["elsewhere"]}).encode(),
        headers={**admin, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        other = {"Authorization": f"Bearer {json.loads(answer.read())['token']}"}
    assert _status(endpoint, path, other) == 404
    assert _status(endpoint, f"/api/v1/runs/{name}/actions/a0", other) == 404
    assert _status(endpoint, f"/api/v1/runs/{name}/actions/a9/report", admin) == 404
