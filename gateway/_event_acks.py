"""What the gateway has applied of each agent's events, so that an event the agent sends again (its outbox resends
whatever was not acknowledged: `agent._outbox`) is acknowledged without being applied twice.

Per cluster and agent incarnation: every sequence number up to `upto` is done (applied, or refused for good), plus
the numbers above it that are done out of order (events of different actions apply concurrently). A batch's `since`
raises `upto`: the agent holds nothing older. The record is this process's memory: after a gateway restart a repeat
goes to the store again, where it is an idempotent state change (the same phase of the same attempt, or an ended
attempt, changes nothing).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import web

KEPT = 1024
"""Agent incarnations remembered (the least recently heard from is forgotten first): a few per cluster."""
ABOVE_KEPT = 20_000
"""Numbers done out of order kept per incarnation (an agent's outbox holds 10,000): past it they are forgotten, and
their repeats go to the store, where they change nothing."""


@dataclass
class Applied:
    """The events of one agent incarnation that are done."""

    upto: int = 0
    above: set[int] = field(default_factory=set)

    def has(self, seq: int) -> bool:
        return seq <= self.upto or seq in self.above

    def since(self, seq: int) -> None:
        """The agent holds no event before `seq` any more (acknowledged, or given up)."""
        if seq - 1 > self.upto:
            self.upto = seq - 1
            self.above = {s for s in self.above if s > self.upto}
            self._advance()

    def done(self, seq: int) -> None:
        if seq > self.upto:
            if len(self.above) >= ABOVE_KEPT:
                self.above.clear()
            self.above.add(seq)
            self._advance()

    def _advance(self) -> None:
        while self.upto + 1 in self.above:
            self.upto += 1
            self.above.remove(self.upto)


class EventAcks:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._applied: OrderedDict[tuple[str, str], Applied] = OrderedDict()

    def of(self, cluster: str, incarnation: str) -> Applied:
        key = (cluster, incarnation)
        applied = self._applied.get(key)
        if applied is None:
            applied = self._applied[key] = Applied()
            if len(self._applied) > self._kept:
                self._applied.popitem(last=False)
        self._applied.move_to_end(key)
        return applied


EVENT_ACKS = web.AppKey("event_acks", EventAcks)
