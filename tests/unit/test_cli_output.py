"""How `flyte get ...` listings come out: full identifiers off a terminal, `--output table|wide|json`, and messages
cut (never names) in a terminal. Runs are local ones, made in-process; the listings come from the real CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import write_and_import
from rich.console import Console

import flyte
from flyte._run import RunContext
from flyte._run_state import RunOptions
from flyte.cli import main
from flyte.cli._progress import watch

LONG = """
import flyte

env = flyte.TaskEnvironment("a_rather_long_environment_name_for_listings")


@env.task
async def child_with_a_long_name_too(x: int) -> int:
    raise ValueError("a long error message that goes on and on; " * 6 + "\\nand has a second line")


@env.task
async def main() -> int:
    return await child_with_a_long_name_too(1)
"""
PARENT = "a_rather_long_environment_name_for_listings.main"
CHILD = "a_rather_long_environment_name_for_listings.child_with_a_long_name_too"


@pytest.fixture
def failed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local run whose child failed with a long, two-line message; its name."""
    monkeypatch.chdir(tmp_path)
    program = write_and_import(tmp_path, "listings_program", LONG)
    run = flyte.with_runcontext(name="listed-run").run(program.main)
    assert run.phase == "failed"
    return run.name


def get(*args: str) -> Result:
    return CliRunner().invoke(main, ["get", *args], catch_exceptions=False)


def body_lines(result: Result) -> list[str]:
    """The table's rows: the lines between the header rule (┡) and the bottom border (└)."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    return [line for line in lines[start + 1 :] if not line.startswith("└")]


def test_off_a_terminal_every_cell_is_printed_whole(failed_run: str) -> None:
    result = get("actions", failed_run)

    assert result.exit_code == 0, result.output
    rows = body_lines(result)
    assert len(rows) == 2, "one line per action, however long"
    child = flyte.remote.Run.get(failed_run).actions()[1].name
    assert len(child) > 12
    assert f"│ {child} │ a0 " in rows[1]
    assert PARENT in rows[0]
    assert CHILD in rows[1]
    assert "and has a second line" in rows[1]
    assert "…" not in result.stdout


def test_json_is_a_list_of_objects(failed_run: str) -> None:
    actions = json.loads(get("actions", failed_run, "--output", "json").stdout)
    runs = json.loads(get("runs", "-o", "JSON").stdout)

    assert [(a["task"], a["phase"]) for a in actions] == [(PARENT, "failed"), (CHILD, "failed")]
    assert actions[1]["error"]["code"] == "ValueError"
    assert [(r["name"], r["task"], r["phase"]) for r in runs] == [(failed_run, PARENT, "failed")]


def test_in_a_terminal_messages_are_cut_and_names_are_not(failed_run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")

    table = get("actions", failed_run)
    wide = get("actions", failed_run, "-o", "wide")
    monkeypatch.setenv("COLUMNS", "80")
    narrow = get("actions", failed_run)

    assert table.exit_code == wide.exit_code == narrow.exit_code == 0
    rows = body_lines(table)
    assert len(rows) == 2, "a long message stays on its row's one line"
    assert all(len(row) <= 200 and row.rstrip(" │").endswith("…") for row in rows)
    assert CHILD in rows[1]
    assert len(body_lines(wide)) > 2, "wide wraps the message in full"
    assert "and has a second line" in "".join(body_lines(wide))
    # Too narrow for the names: they fold onto more lines (read down the column), never cut.
    task_column = "".join(line.split("│")[3].strip() for line in body_lines(narrow))
    assert task_column == PARENT + CHILD


def test_live_progress_folds_names_on_a_narrow_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    program = write_and_import(tmp_path, "narrow_progress_program", LONG)
    started = RunContext("local", RunOptions(name="narrow-run")).start(program.main, (), {})
    screen = io.StringIO()

    watch(started, interactive=True, console=Console(file=screen, force_terminal=True, color_system=None, width=60))

    # The last frame, with the padding between cells gone: each folded name reads whole again.
    frame = "".join(screen.getvalue().split("narrow-run")[-1].split())
    assert all(name in frame for name in started._state.actions)
    assert CHILD in frame
