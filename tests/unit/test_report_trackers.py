"""Flyte 2's report widgets in a local `report=True` task: `DataProcessingTracker` and `TrainingLossTracker` render
their state as plain HTML and SVG into their own fragment of the main tab, which each update replaces, leaving
what else the task logged in place; their `complete()` answers Flyte 2's summaries."""

from __future__ import annotations

from typing import Any

import pytest

import flyte
import flyte.report
from flyte._paths import runs_dir

env = flyte.TaskEnvironment("report_trackers")


@env.task(report=True)
async def process(total: int) -> dict[str, Any]:
    flyte.report.log("<p id='before'>intro</p>")
    tracker = flyte.report.DataProcessingTracker(total, title="Rows <raw>")
    await tracker.initialize()
    await tracker.batch_update(60)
    flyte.report.log("<p id='between'>logged meanwhile</p>")
    await tracker.batch_update(40, batch_errors=2)
    return await tracker.complete()


@env.task(report=True)
async def train(epochs: int) -> dict[str, Any]:
    tracker = flyte.report.TrainingLossTracker(epochs)
    losses = [1.0, 0.6, 0.5, 0.55, 0.56]
    stopped = False
    for epoch, loss in enumerate(losses[:epochs], start=1):
        await tracker.log_epoch(epoch, loss + 0.1, loss, accuracy=0.5 + epoch / 10, learning_rate=1e-3)
        if await tracker.early_stopping_check(patience=2):
            stopped = True
            break
    result = await tracker.complete(save_model=False)
    return {**result, "stopped": stopped}


def _page(run: flyte.Run) -> str:
    return (runs_dir() / run.name / "reports" / "a0.html").read_text()


def test_the_data_tracker_shows_progress_and_keeps_other_fragments() -> None:
    run = flyte.with_runcontext(mode="local").run(process, total=100)
    (summary,) = run.outputs()
    assert (summary["processed"], summary["errors"], summary["total_records"]) == (100, 2, 100)
    assert summary["success_rate"] == pytest.approx(98.0)
    page = _page(run)
    assert page.count('class="flyte-data-tracker"') == 1, "each update replaced the widget's own fragment"
    assert page.index("id='before'") < page.index("flyte-data-tracker") < page.index("id='between'")
    assert "Rows &lt;raw&gt;" in page
    assert "width:100.0%" in page
    assert "Processed batch of 40 records (2 errors)" in page
    assert "Processing Complete!" in page
    assert "<polyline" in page
    assert "<script" not in page


def test_the_training_tracker_draws_losses_and_stops_early() -> None:
    run = flyte.with_runcontext(mode="local").run(train, epochs=5)
    (result,) = run.outputs()
    assert result["stopped"] is True
    # Epoch 4 is the second without a validation loss below epoch 3's 0.5 (patience 2).
    assert (result["epochs_completed"], result["best_epoch"], result["best_val_loss"]) == (4, 3, 0.5)
    assert result["validation_losses"] == [1.0, 0.6, 0.5, 0.55]
    assert result["metrics_history"]["accuracy"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    page = _page(run)
    assert page.count('class="flyte-training-tracker"') == 1
    assert page.count("<polyline") == 2
    assert '<span class="epoch">4/5</span>' in page
    assert "Early Stopping Triggered" in page
    assert "Training complete" in page
    assert "<td>90.00%</td>" in page
    assert "<td>1.00e-03</td>" in page


def test_trackers_check_their_sizes() -> None:
    with pytest.raises(ValueError, match="total_records"):
        flyte.report.DataProcessingTracker(0)
    with pytest.raises(ValueError, match="total_epochs"):
        flyte.report.TrainingLossTracker(-1)


def test_outside_a_report_task_the_widgets_write_nowhere() -> None:
    import asyncio

    tracker = flyte.report.TrainingLossTracker(2)
    asyncio.run(tracker.log_epoch(1, 0.5, 0.4))
    assert tracker.best_epoch == 1
