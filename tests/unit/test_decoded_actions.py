"""Action records decoded once (`gateway._decoded`): a record written here is never parsed again, one read is
parsed once per revision, and the cache stays bounded."""

from __future__ import annotations

import pydantic
import pytest

from flyte._wire import ActionSummary, Phase
from gateway._decoded import DecodedActions

KEY = "/flyte/actions/r1/a0"


def action(revision: int, phase: Phase = Phase.QUEUED) -> ActionSummary:
    return ActionSummary(name="a0", parent=None, run="r1", task="env.work", phase=phase, revision=revision)


def test_a_record_written_here_is_answered_without_parsing_its_bytes() -> None:
    decoded = DecodedActions()
    written = decoded.remember(KEY, action(7))
    assert decoded.decode(KEY, b"not json at all", 7) is written


def test_another_revision_is_parsed_and_then_kept() -> None:
    decoded = DecodedActions()
    decoded.remember(KEY, action(7))
    stored = action(0, Phase.RUNNING).model_dump_json(exclude={"revision"}).encode()
    first = decoded.decode(KEY, stored, 8)
    assert (first.phase, first.revision) == (Phase.RUNNING, 8)
    assert decoded.decode(KEY, b"", 8) is first
    with pytest.raises(pydantic.ValidationError):
        decoded.decode(KEY, b"{}", 9)


def test_the_oldest_entries_go_first() -> None:
    decoded = DecodedActions(kept=2)
    for revision in (1, 2, 3):
        decoded.remember(KEY, action(revision))
    with pytest.raises(pydantic.ValidationError):
        decoded.decode(KEY, b"{}", 1)
    assert decoded.decode(KEY, b"{}", 3).revision == 3


def test_a_record_seen_before_its_writer_learns_the_revision_is_not_parsed() -> None:
    decoded = DecodedActions()
    mine = action(0, Phase.RUNNING)
    value = decoded.written(KEY, mine.model_dump_json(exclude={"revision"}).encode(), mine)
    seen = decoded.decode(KEY, value, 12)
    assert (seen.phase, seen.revision) == (Phase.RUNNING, 12)
    assert decoded.decode(KEY, b"", 12) is seen


def test_a_write_the_watch_saw_first_is_copied_with_its_revision_once() -> None:
    decoded = DecodedActions()
    mine = action(0, Phase.RUNNING)
    value = decoded.written(KEY, mine.model_dump_json(exclude={"revision"}).encode(), mine)
    seen = decoded.decode(KEY, value, 12)
    assert decoded.committed(KEY, value, mine, 12) is seen


def test_a_write_its_writer_learned_first_is_what_the_watch_sees_and_is_not_held_by_its_bytes() -> None:
    decoded = DecodedActions()
    mine = action(0, Phase.RUNNING)
    value = decoded.written(KEY, mine.model_dump_json(exclude={"revision"}).encode(), mine)
    stored = decoded.committed(KEY, value, mine, 12)
    assert (stored.phase, stored.revision) == (Phase.RUNNING, 12)
    assert decoded.decode(KEY, value, 12) is stored
    assert not decoded._written  # the bytes are not kept once the record is remembered by its revision
