"""The CLI against a real rig (one gateway, one agent, started once): `rig up` refusing a rig that is up, a silent
task's logs, placement durations and JSON listings, all through the `flyte` command as a user runs it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, start_rig
from waiting import assert_eventually

pytestmark = pytest.mark.timeout(180)

SILENT = """
import flyte

env = flyte.TaskEnvironment("cli_rig_silent")


@env.task
async def main() -> int:
    return 7
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("cli-rig"), clusters="us-east")
    try:
        yield started
    finally:
        started.flyte("rig", "down")


@pytest.fixture(scope="module")
def silent_run(rig: Rig) -> str:
    (rig.cwd / "silent.py").write_text(SILENT)
    done = rig.flyte("run", "silent.py", "main")
    assert done.returncode == 0, done.stderr
    assert "running locally" not in done.stderr
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert fields["output"] == "7"
    return fields["run"]


def test_rig_up_refuses_while_a_rig_is_up(rig: Rig) -> None:
    config = rig.cwd / ".flyte" / "config.yaml"
    before = (config.read_text(), rig.pids())
    endpoint = json.loads((Path(rig.env["FLYTE_HOME"]) / "rig" / "rig.json").read_text())["endpoint"]

    again = rig.flyte("rig", "up", "--clusters", "us-east")

    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        f"Error: a rig is already up: gateway {endpoint}; run flyte rig down first, or flyte rig up --replace"
    ]
    assert (config.read_text(), rig.pids()) == before, "the running rig is left as it was"
    assert rig.flyte("get", "clusters").returncode == 0


def test_a_silent_task_has_no_output(rig: Rig, silent_run: str) -> None:
    logs = rig.flyte("get", "logs", silent_run)

    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == ""
    assert logs.stderr == "(no output)\n"


def test_placement_shows_durations_rounded(rig: Rig, silent_run: str) -> None:
    shown = rig.flyte("get", "placement", silent_run)

    assert shown.returncode == 0, shown.stderr
    demand = next(line for line in shown.stdout.splitlines() if line.startswith("demand: "))
    assert "_seconds" not in demand
    waited = re.search(r"waited=([^,]*)", demand)
    assert waited is not None, demand
    assert re.fullmatch(r"\d+(\.\d)? ms|\d+\.\d s|\d+ m \d+ s", waited.group(1)), demand


def test_listings_as_json(rig: Rig, silent_run: str) -> None:
    actions = json.loads(rig.flyte("get", "actions", silent_run, "-o", "json").stdout)
    clusters = json.loads(rig.flyte("get", "clusters", "--output", "json").stdout)
    tasks = json.loads(rig.flyte("get", "tasks", "-o", "json").stdout)

    assert [(a["name"], a["phase"], a["cluster"]) for a in actions] == [("a0", "succeeded", "us-east")]
    assert [(c["name"], c["connected"]) for c in clusters] == [("us-east", True)]
    assert "cli_rig_silent.main" in {t["name"] for t in tasks}


def test_trace_spans_show_durations_rounded_on_one_line_each(rig: Rig, silent_run: str) -> None:
    # Spans arrive from the agent and the worker in batches: wait until the worker's task span is there.
    assert_eventually(lambda: "task cli_rig_silent.main" in rig.flyte("get", "trace", silent_run).stdout, timeout=20)
    shown = rig.flyte("get", "trace", silent_run)

    spans = shown.stdout.splitlines()[1:]
    assert shown.stdout.splitlines()[0] == f"trace of run {silent_run}"
    assert len(spans) >= 3
    assert all(re.search(r"  (\d+(\.\d)? ms|\d+\.\d s|\d+ m \d+ s)$", span) for span in spans), shown.stdout


def test_a_rig_that_fails_to_come_up_leaves_nothing_running(tmp_path: Path) -> None:
    # Its own FLYTE_HOME: the module's rig is not touched.
    (tmp_path / "home").mkdir()
    env = {**os.environ, "FLYTE_HOME": str(tmp_path / "flyte-home"), "HOME": str(tmp_path / "home")}
    failed = Rig(tmp_path, env)

    up = failed.flyte("rig", "up", "--clusters", "a,b", "--cpu", "lots", timeout=90)

    assert up.returncode == 1
    assert up.stderr.startswith("Error: agent-a did not come up"), up.stderr
    assert "'lots' is not a CPU amount" in up.stderr
    # The gateway (and any agent) it started went down with it: no process is left that runs from its home.
    assert_eventually(lambda: _processes_under(tmp_path) == [], timeout=15)
    assert not (tmp_path / "flyte-home" / "rig" / "rig.json").exists()
    assert failed.flyte("rig", "down").stdout == "no rig is up\n"


def _processes_under(root: Path) -> list[str]:
    """The command lines of running processes that name a path under `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(root) in command and os.getpid() != int(entry.name):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(command)
        except OSError:
            continue  # it ended meanwhile
    return found
