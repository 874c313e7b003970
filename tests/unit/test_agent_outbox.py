"""The agent's outbox (`agent._outbox`) and the gateway's record of what it applied (`gateway._event_acks`): events
are numbered, kept until acknowledged, sent again in order after a reconnect or an overdue acknowledgement, bounded;
a repeat is recognised."""

from __future__ import annotations

import pytest

from agent._outbox import ACK_TIMEOUT, Outbox
from flyte._retrying import RetryDelay
from flyte._wire import ActionEvent, AgentEvents, ErrorInfo, Phase
from gateway._event_acks import Applied, EventAcks

OOM = ErrorInfo(error_type="OOMError", code="OOMError", kind="user", message="killed by the memory limit")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outbox(clock: Clock, **kwargs: int) -> Outbox:
    # The resend backoff's largest draw every time: the times below are exact.
    return Outbox(resend=RetryDelay(1.0, 8.0, draw=lambda ceiling: ceiling), clock=clock, **kwargs)


def name(n: int) -> str:
    """Action n's name (names are the parent's hash, as the gateway makes them)."""
    return f"a{n:020x}"


def running(box: Outbox, n: int, attempt: int = 1) -> None:
    box.add("r1", name(n), ActionEvent(phase=Phase.RUNNING, attempt=attempt, cluster="c", epoch=1))


def failed(box: Outbox, n: int, attempt: int = 1) -> None:
    box.add("r1", name(n), ActionEvent(phase=Phase.FAILED, attempt=attempt, cluster="c", epoch=1, error=OOM))


def seqs(messages: list[AgentEvents]) -> list[int]:
    return [item.seq for message in messages for item in message.events]


def test_events_are_numbered_in_order_and_sent_once_per_connection() -> None:
    box = outbox(Clock())
    running(box, 1)
    failed(box, 1)
    (message,) = box.due()
    assert seqs([message]) == [1, 2]
    assert (message.incarnation, message.since) == (box.incarnation, 1)
    assert [item.event.phase for item in message.events] == [Phase.RUNNING, Phase.FAILED]
    assert box.due() == [], "sent, not yet overdue: not sent again"
    running(box, 2)
    assert seqs(box.due()) == [3], "only what is new"
    assert len(box) == 3, "nothing is forgotten before the gateway acknowledges it"


def test_an_acknowledgement_trims_up_to_its_number_and_says_where_the_rest_start() -> None:
    box = outbox(Clock())
    for n in range(1, 4):
        failed(box, n)
    box.due()
    box.acked(box.incarnation, 2)
    assert len(box) == 1
    box.reconnected()
    (message,) = box.due()
    assert seqs([message]) == [3]
    assert message.since == 3, "the gateway need not wait for 1 and 2"
    box.acked(box.incarnation, 3)
    assert len(box) == 0
    assert box.due() == []


def test_an_acknowledgement_of_another_incarnation_trims_nothing() -> None:
    box = outbox(Clock())
    failed(box, 1)
    box.due()
    box.acked("0ther", 1)
    assert len(box) == 1


def test_a_reconnect_sends_every_unacknowledged_event_again_oldest_first() -> None:
    box = outbox(Clock())
    for n in range(1, 5):
        running(box, n)
    box.due()
    box.acked(box.incarnation, 1)
    running(box, 5)
    box.reconnected()
    assert seqs(box.due()) == [2, 3, 4, 5]
    assert box.due() == []


def test_an_overdue_acknowledgement_resends_with_a_growing_delay_until_progress() -> None:
    clock = Clock()
    box = outbox(clock)
    failed(box, 1)
    assert seqs(box.due()) == [1]
    clock.now += ACK_TIMEOUT - 0.01
    assert box.due() == [], "an acknowledgement may take a store write"
    clock.now += 0.01
    assert seqs(box.due()) == [1], "no acknowledgement in time: sent again"
    # The next resend waits the timeout plus the backoff: 1 s, then 2 s (the largest draws).
    clock.now += ACK_TIMEOUT + 1.0 - 0.01
    assert box.due() == []
    clock.now += 0.01
    assert seqs(box.due()) == [1]
    clock.now += ACK_TIMEOUT + 2.0
    assert seqs(box.due()) == [1]
    failed(box, 2)
    box.acked(box.incarnation, 1)
    assert seqs(box.due()) == [2], "progress: the backoff starts again, and only the new event goes"
    clock.now += ACK_TIMEOUT
    assert seqs(box.due()) == [2]


def test_the_outbox_is_bounded_and_gives_up_the_oldest() -> None:
    box = outbox(Clock(), limit=3)
    for n in range(1, 6):
        failed(box, n)
    assert (len(box), box.dropped) == (3, 2)
    (message,) = box.due()
    assert seqs([message]) == [3, 4, 5]
    assert message.since == 3, "the given-up events will never come: the gateway must not wait for them"
    assert box.ended() == {f"r1/{name(n)}/1" for n in (3, 4, 5)}


def test_batches_split_a_long_outbox() -> None:
    box = outbox(Clock(), batch=2)
    for n in range(1, 6):
        running(box, n)
    messages = box.due()
    assert [seqs([m]) for m in messages] == [[1, 2], [3, 4], [5]]
    assert {m.since for m in messages} == {1}


def test_batches_stay_under_a_size() -> None:
    box = outbox(Clock(), batch_bytes=1500)
    long = OOM.model_copy(update={"traceback": "x" * 1000})
    for n in range(1, 4):
        box.add("r1", name(n), ActionEvent(phase=Phase.FAILED, attempt=1, cluster="c", epoch=1, error=long))
    assert [seqs([m]) for m in box.due()] == [[1], [2], [3]], "two of them would not fit in one"


def test_ended_names_the_attempts_whose_end_waits_in_the_outbox() -> None:
    box = outbox(Clock())
    running(box, 1)
    running(box, 2, attempt=2)
    failed(box, 2, attempt=2)
    assert box.ended() == {f"r1/{name(2)}/2"}, "a running alone is no end: that attempt may have been lost"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="limit=0"):
        Outbox(limit=0)


def test_the_gateway_record_acknowledges_contiguously_and_recognises_repeats() -> None:
    applied = Applied()
    applied.done(2)
    assert applied.upto == 0, "1 is not done yet"
    assert applied.has(2)
    assert not applied.has(1)
    applied.done(1)
    assert (applied.upto, applied.above) == (2, set())
    applied.done(1)
    assert applied.upto == 2, "a repeat changes nothing"


def test_the_gateway_record_skips_what_the_agent_no_longer_holds() -> None:
    applied = Applied()
    applied.done(7)
    applied.since(5)
    assert applied.upto == 4, "1-4 were acknowledged before (a gateway restart) or given up"
    applied.done(5)
    applied.done(6)
    assert (applied.upto, applied.above) == (7, set())
    applied.since(3)
    assert applied.upto == 7, "an older floor never lowers it"


def test_the_gateway_remembers_incarnations_per_cluster_and_forgets_the_least_recent() -> None:
    acks = EventAcks(kept=2)
    acks.of("c", "1").done(1)
    acks.of("c", "2").done(1)
    assert acks.of("c", "1").upto == 1, "a new incarnation does not reset another's record"
    acks.of("d", "1")
    assert acks.of("c", "2").upto == 0, "forgotten: the least recently heard from"
    assert acks.of("c", "1").upto == 0, "forgotten too, when c/2 came back and pushed it out"
