"""The agent's outbox: every event the agent reports (an attempt running; an attempt failed where its worker could
not say so: out of memory, timed out, crashed) is kept until the gateway acknowledges it, and sent again after a
reconnect or when no acknowledgement comes.

    add(event) ─► seq n ─► due() sends it ─► the gateway applies it to the store ─► EventsAck(upto) ─► acked(upto)
                            └─ the socket closes (reconnected()), or no ack in time ─► due() sends every unacked one
                               again, oldest first

Sequence numbers count per agent incarnation (a random id made when the agent starts): the gateway remembers how far
it applied each incarnation's events and answers a repeat with an acknowledgement alone. A gateway that restarted has
forgotten; a repeat is then an idempotent state change (the same phase of the same attempt changes nothing, and an
ended attempt never changes). Each batch says from which number the agent still holds events (`since`), so a gateway
never waits for events acknowledged before its restart or given up here.

Bound: at most `limit` events (10,000: a few MB even with every one a failure carrying its traceback). Past it, which
takes a gateway away for long with thousands of attempts ending meanwhile, the oldest is given up (a warning, and
`dropped` counts them): the newest describe the attempts the gateway is most likely still waiting on. A given-up
event costs a retry, not a result: the next hello does not name its attempt as reporting, so the gateway fails it
over as `ClusterLost`, a system error that the retry policy queues again (at least once still holds; its cause is
what is lost).

The outbox lives in the agent's memory: an agent that dies loses it, as it loses the attempts it ran, and the gateway
fails those over when the agent's lease expires.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable

from flyte._retrying import RetryDelay
from flyte._wire import ActionEvent, AgentEvent, AgentEvents

log = logging.getLogger("flyte.agent.outbox")

LIMIT = 10_000
"""Events kept at most while the gateway does not acknowledge them."""
BATCH = 100
"""Events per `AgentEvents` message at most (the wire takes up to 1000)."""
BATCH_BYTES = 1024 * 1024
"""Bytes of events per message at most, well under the gateway's 8 MiB message limit: a failure carries its message
and traceback (up to about 1 MB by the wire's own limits), and a message the gateway refuses would be sent again and
again."""
ACK_TIMEOUT = 2.0
"""Seconds an acknowledgement may take (a store write, under load) before the events are sent again; each resend
without progress waits longer (capped exponential backoff with jitter, `RetryDelay`)."""


class Outbox:
    """Unacknowledged agent events, in the order they were made. Not thread-safe: the agent's event loop owns it."""

    def __init__(
        self,
        *,
        limit: int = LIMIT,
        batch: int = BATCH,
        batch_bytes: int = BATCH_BYTES,
        resend: RetryDelay | None = None,
        clock: Callable[[], float] = time.monotonic,
        incarnation: str | None = None,
    ) -> None:
        if limit < 1 or batch < 1:
            raise ValueError(f"Outbox(limit={limit}, batch={batch}): both must be at least 1")
        self.incarnation = incarnation or secrets.token_hex(8)
        self._limit = limit
        self._batch = batch
        self._batch_bytes = batch_bytes
        self._resend = resend or RetryDelay(1.0, 30.0)
        self._clock = clock
        self._pending: deque[AgentEvent] = deque()
        self._next = 1
        self._sent = 0
        """The highest sequence number sent on the current connection."""
        self._resend_at: float | None = None
        """When to send every unacknowledged event again; None: nothing sent waits for an acknowledgement."""
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, run: str, action: str, event: ActionEvent) -> AgentEvent:
        """Keep an event, numbered next; it goes out with the next `due()`."""
        item = AgentEvent(run=run, action=action, event=event, seq=self._next)
        self._next += 1
        self._pending.append(item)
        if len(self._pending) > self._limit:
            lost = self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "the gateway has not acknowledged %d events; giving up the oldest (%d given up so far, the last "
                    "%s of %s/%s attempt %d): the gateway will retry those attempts as lost",
                    self._limit,
                    self.dropped,
                    lost.event.phase.value,
                    lost.run,
                    lost.action,
                    lost.event.attempt,
                )
        return item

    def due(self) -> list[AgentEvents]:
        """The messages to send now: the events not yet sent on this connection, or, when the acknowledgement is
        overdue, every unacknowledged one again. Sending counts as done: what is lost on the way is sent again."""
        now = self._clock()
        if self._resend_at is not None and now >= self._resend_at:
            self._sent = 0
            self._resend_at = now + ACK_TIMEOUT + self._resend.next()
        if not self._pending or self._pending[-1].seq <= self._sent:
            return []
        fresh = [item for item in self._pending if item.seq > self._sent]
        self._sent = fresh[-1].seq
        if self._resend_at is None:
            self._resend_at = now + ACK_TIMEOUT
        since = self._pending[0].seq
        return [AgentEvents(incarnation=self.incarnation, since=since, events=batch) for batch in self._batches(fresh)]

    def _batches(self, items: list[AgentEvent]) -> list[list[AgentEvent]]:
        batches: list[list[AgentEvent]] = [[]]
        size = 0
        for item in items:
            item_size = len(item.model_dump_json())
            if batches[-1] and (len(batches[-1]) >= self._batch or size + item_size > self._batch_bytes):
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += item_size
        return batches

    def acked(self, incarnation: str, upto: int) -> None:
        """The gateway applied every event up to `upto`: forget them."""
        if incarnation != self.incarnation:
            return  # about an earlier agent process on this cluster; nothing here is its
        progress = False
        while self._pending and self._pending[0].seq <= upto:
            self._pending.popleft()
            progress = True
        if not progress:
            return
        self._resend.reset()
        waiting = bool(self._pending) and self._pending[0].seq <= self._sent
        self._resend_at = self._clock() + ACK_TIMEOUT if waiting else None

    def reconnected(self) -> None:
        """A new connection: nothing was sent on it yet, so every unacknowledged event goes out again, in order."""
        self._sent = 0
        self._resend_at = None
        self._resend.reset()

    def ended(self) -> set[str]:
        """`run/action/attempt` keys of the attempts whose end (a failed, succeeded or aborted event) waits here."""
        return {f"{i.run}/{i.action}/{i.event.attempt}" for i in self._pending if i.event.phase.is_terminal}
