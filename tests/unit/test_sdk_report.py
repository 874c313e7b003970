"""Local mode: `flyte.report` writes one HTML page per action of a `report=True` task into the run's metadata
directory, with tabs, log/replace/flush, and the state a failed attempt reached."""

from __future__ import annotations

from pathlib import Path

import pytest

import flyte
import flyte.report
from flyte._paths import runs_dir
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_report")


def _report_path(run: flyte.Run, action: str = "a0") -> Path:
    return runs_dir() / run.name / "reports" / f"{action}.html"


@env.task(report=True)
async def async_report(n: int) -> int:
    flyte.report.log("<h2>Summary</h2>")
    await flyte.report.log.aio(f"<p>n={n}</p>")
    tab = flyte.report.get_tab("Details <raw>")
    tab.log("<table><tr><td>row</td></tr></table>")
    flyte.report.get_tab("Replaced").log("<p>old</p>")
    flyte.report.get_tab("Replaced").replace("<p>new</p>")
    return n


@env.task(report=True)
def sync_report(n: int) -> int:
    flyte.report.replace("<p>first</p>")
    flyte.report.replace(f"<p>only {n}</p>", do_flush=True)
    return n * 2


@env.task(report=True, retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01)))
async def report_then_fail(n: int) -> int:
    tc = flyte.ctx()
    assert tc is not None
    flyte.report.log(f"<p>attempt {tc.attempt}</p>")
    if n < 0 or tc.attempt == 1:
        raise ValueError("failing after writing the report")
    return n


@env.task
async def parent(n: int) -> int:
    flyte.report.log("<p>not kept: this task has no report</p>")
    return await sync_report.aio(n) + 1


@env.task(report=True)
async def flush_then_wait(n: int) -> str:
    flyte.report.log("<p>before</p>")
    await flyte.report.flush.aio()
    tc = flyte.ctx()
    assert tc is not None
    page = (runs_dir() / tc.action.run_name / "reports" / f"{tc.action.name}.html").read_text()
    flyte.report.log("<p>after</p>")
    return page


def test_report_with_tabs_is_written_to_the_run_metadata() -> None:
    run = flyte.run(async_report, 3)
    assert run.phase is Phase.SUCCEEDED
    page = _report_path(run).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.index("<h2>Summary</h2>") < page.index("<p>n=3</p>")
    assert "<table><tr><td>row</td></tr></table>" in page
    assert "Details &lt;raw&gt;" in page  # a tab name is text, never markup
    assert "<p>new</p>" in page
    assert "<p>old</p>" not in page


def test_sync_task_replace_and_child_action_reports() -> None:
    run = flyte.run(parent, 4)
    assert run.outputs()[0] == 9
    reports = list((runs_dir() / run.name / "reports").glob("*.html"))
    # Only the child declared report=True; the parent's log went to a throwaway report.
    assert len(reports) == 1
    page = reports[0].read_text()
    assert "<p>only 4</p>" in page
    assert "first" not in page
    assert "not kept" not in page


def test_flush_saves_midway_and_the_end_saves_the_rest() -> None:
    run = flyte.run(flush_then_wait, 1)
    midway = run.outputs()[0]
    assert "<p>before</p>" in midway
    assert "<p>after</p>" not in midway
    assert "<p>after</p>" in _report_path(run).read_text()


def test_each_attempt_starts_a_fresh_report_and_a_failed_one_is_kept() -> None:
    run = flyte.run(report_then_fail, 1)
    assert run.outputs()[0] == 1
    page = _report_path(run).read_text()
    assert "<p>attempt 2</p>" in page
    assert "<p>attempt 1</p>" not in page

    failed = flyte.run(report_then_fail, -1)
    assert failed.phase is Phase.FAILED
    assert "<p>attempt 2</p>" in _report_path(failed).read_text()


def test_outside_a_task_reports_are_throwaway() -> None:
    flyte.report.log("<p>nowhere</p>")
    flyte.report.flush()
    assert flyte.report.current_report().name == "dummy"
    with pytest.raises(ValueError, match="no tab 'missing'"):
        flyte.report.get_tab("missing", create_if_missing=False)
    with pytest.raises(TypeError, match="HTML str"):
        flyte.report.current_report().get_tab("main").log(42)  # type: ignore[arg-type]
