"""The action state machine (`gateway._runs._transition`), one event at a time: what it accepts, what it answers a
duplicate with, and what it refuses (a stale epoch, another cluster, the wrong attempt, a backwards move). An ended
action record never changes."""

from __future__ import annotations

import pytest

from flyte._wire import ActionEvent, ActionSummary, ErrorInfo, Phase
from gateway._domain_errors import DomainError
from gateway._errors import ApiError, as_api_error
from gateway._runs import _transition

ERROR = ErrorInfo(error_type="ValueError", code="ValueError", kind="user", message="no")


def action(phase: Phase = Phase.QUEUED, attempts: int = 0, cluster: str | None = None, epoch: int = 0) -> ActionSummary:
    return ActionSummary(
        name="a0",
        parent=None,
        task="env.work",
        phase=phase,
        attempts=attempts,
        cluster=cluster,
        epoch=epoch,
        created_at=1.0,
    )


def refused(current: ActionSummary, event: ActionEvent) -> ApiError:
    """The domain error the transition raises, as the HTTP answer it becomes."""
    with pytest.raises(DomainError) as error:
        _transition(current, event)
    return as_api_error(error.value)


def test_placing_starts_the_next_attempt_on_the_cluster_and_epoch() -> None:
    placed = _transition(action(), ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east", epoch=3))
    assert (placed.phase, placed.attempts, placed.cluster, placed.epoch) == (Phase.PLACED, 1, "east", 3)
    assert placed.waiting is None


def test_a_duplicate_event_changes_nothing() -> None:
    running = action(Phase.RUNNING, attempts=1, cluster="east", epoch=3)
    assert _transition(running, ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=3)) is running


def test_an_event_from_an_older_epoch_is_refused() -> None:
    running = action(Phase.RUNNING, attempts=1, cluster="east", epoch=3)
    error = refused(running, ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=2))
    assert (error.status, error.code) == (409, "stale_epoch")


def test_an_agent_cannot_end_an_attempt_on_another_cluster() -> None:
    running = action(Phase.RUNNING, attempts=1, cluster="east", epoch=3)
    error = refused(running, ActionEvent(phase=Phase.FAILED, attempt=1, cluster="west", epoch=9, error=ERROR))
    assert (error.status, error.code) == (403, "wrong_cluster")


def test_an_event_for_another_attempt_is_refused() -> None:
    running = action(Phase.RUNNING, attempts=2, cluster="east", epoch=3)
    error = refused(running, ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=3))
    assert (error.status, error.code) == (409, "stale_attempt")


@pytest.mark.parametrize("ended", [Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED])
def test_an_ended_action_never_changes(ended: Phase) -> None:
    done = action(ended, attempts=1, cluster="east", epoch=3)
    error = refused(done, ActionEvent(phase=Phase.QUEUED, attempt=1, cluster="east", epoch=3))
    assert (error.status, error.code) == (409, "illegal_transition")


def test_a_failure_must_say_why_and_a_success_must_not_carry_an_error() -> None:
    running = action(Phase.RUNNING, attempts=1, cluster="east", epoch=3)
    assert refused(running, ActionEvent(phase=Phase.FAILED, attempt=1, cluster="east", epoch=3)).status == 400
    success = ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=3, error=ERROR)
    assert refused(running, success).status == 400
    failed = _transition(running, ActionEvent(phase=Phase.FAILED, attempt=1, cluster="east", epoch=3, error=ERROR))
    assert failed.phase is Phase.FAILED
    assert failed.error == ERROR
    assert failed.ended_at is not None
