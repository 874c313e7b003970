"""Reads `gateway._runs.Runs` saves on the hot path: a report given the record its caller just read compares against
it (and reads again when it lost a race), and a run record is decoded once per revision."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, domain, new_run

from flyte._wire import ActionEvent, Phase


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


async def test_a_report_given_a_stale_read_reads_again_and_applies_to_the_current_record(d: Domain) -> None:
    run = await new_run(d.runs)
    read, _ = await d.runs.read_action(run, "a0")
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east", epoch=1))
    running = await d.runs.report(
        run, "a0", ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=1), seen=read
    )
    assert (running.phase, running.attempts) == (Phase.RUNNING, 1)
    stored, kv = await d.runs.read_action(run, "a0")
    assert stored.phase is Phase.RUNNING
    assert kv.mod_revision > read.revision


async def test_a_report_given_the_current_read_applies_it(d: Domain) -> None:
    run = await new_run(d.runs)
    read, _ = await d.runs.read_action(run, "a0")
    placed = await d.runs.report(
        run, "a0", ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east", epoch=1), seen=read
    )
    assert (placed.phase, placed.cluster) == (Phase.PLACED, "east")
    assert (await d.runs.get_action(run, "a0")).phase is Phase.PLACED


async def test_a_run_record_is_decoded_once_per_revision(d: Domain) -> None:
    run = await new_run(d.runs)
    first = await d.runs.get_run(run)
    assert await d.runs.get_run(run) is first
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east", epoch=1))
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=1))
    started = await d.runs.get_run(run)  # the root running starts the run: a new revision, decoded again
    assert (first.phase, started.phase) == (Phase.QUEUED, Phase.RUNNING)
