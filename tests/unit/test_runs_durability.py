"""Which action writes `gateway._runs.Runs` makes durable: a `placed` or `running` mark is written without an fsync,
an attempt's end and a retry's requeue always are durable, and a waiting reason never is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, domain, new_run, record_writes

from flyte._wire import ActionEvent, ErrorInfo, Phase


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


def event(phase: Phase, attempt: int = 1, error: ErrorInfo | None = None) -> ActionEvent:
    return ActionEvent(phase=phase, attempt=attempt, cluster="east", epoch=1, error=error)


async def test_only_marks_skip_durability_and_an_end_or_a_requeue_is_durable(
    d: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await new_run(d.runs)
    writes = record_writes(d, monkeypatch)
    assert await d.runs.note_waiting(run, "a0", 0, "no room")
    await d.runs.report(run, "a0", event(Phase.PLACED))
    await d.runs.report(run, "a0", event(Phase.RUNNING))
    lost = ErrorInfo(error_type="RuntimeSystemError", code="ClusterLost", kind="system", message="gone")
    requeued = await d.runs.report(run, "a0", event(Phase.FAILED, error=lost))
    assert requeued.phase is Phase.QUEUED  # a system retry: the requeue is durable
    await d.runs.report(run, "a0", event(Phase.RUNNING, attempt=2))
    ended = await d.runs.report(run, "a0", event(Phase.SUCCEEDED, attempt=2))
    assert ended.phase is Phase.SUCCEEDED
    assert writes == ["not durable", "not durable", "not durable", "durable", "not durable", "durable"]
