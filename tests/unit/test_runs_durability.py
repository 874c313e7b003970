"""Which action writes `gateway._runs.Runs` makes durable: a `placed` or `running` mark is written without an fsync,
an attempt's end and a retry's requeue always are durable, and a waiting reason never is."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, child, domain, new_run, record_writes

from flyte._wire import ActionEvent, ErrorInfo, Phase
from gateway._runs import SYSTEM_BACKOFF_CAP, system_retry_delay


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


async def test_the_attempts_of_a_lost_cluster_come_back_spread_over_half_their_backoff(d: Domain) -> None:
    run = await new_run(d.runs)
    lost = ErrorInfo(error_type="RuntimeSystemError", code="ClusterLost", kind="system", message="gone")
    names = [await child(d.runs, run, f"a{i:020d}") for i in range(1, 41)]
    due = []
    for name in names:
        await d.runs.report(run, name, event(Phase.PLACED))
        before = time.time()
        requeued = await d.runs.report(run, name, event(Phase.FAILED, error=lost))
        assert requeued.phase is Phase.QUEUED
        assert requeued.not_before is not None
        due.append(requeued.not_before - before)
    # The first system failure's backoff is 1 s: each waits between half of it and all of it, never longer.
    assert all(0.5 - 0.05 <= wait <= 1.0 + 0.05 for wait in due), due
    assert max(due) - min(due) > 0.2, f"forty retries of one lost cluster all due together: {due}"


def test_a_system_retry_never_waits_longer_than_its_capped_backoff() -> None:
    assert [system_retry_delay(n, draw=0.0) for n in (1, 2, 3, 7)] == [0.5, 1.0, 2.0, SYSTEM_BACKOFF_CAP / 2]
    assert system_retry_delay(9, draw=0.999999) <= SYSTEM_BACKOFF_CAP
