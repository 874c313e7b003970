"""The placement queue: the queued actions, each grouped with the others that placing would treat alike.

A fan-out queues thousands of children that ask for the same thing. When capacity changes (every time an attempt
ends), the placer looks at the queue again; looking at every queued action each time made a pass cost the whole
queue, so a fan-out of n cost O(n) per action. Here each queued action, once its `Pending` is known, joins the
group of the actions with the same static demand, run, parent and queue limit: they are placed in the same way, in
their order. A pass walks the groups merged in arrival order and leaves a group at its first action that has to
wait when every action of the group already has that waiting reason recorded: the rest would wait for it too.
A pass then costs what it places plus one action per group.

What placing an action needs (`Pending`: its task version, scope and demand) is computed once per attempt and kept
here; the demand's `waited_seconds` is the only part that moves, and is set again when the action is decided.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from flyte._wire import ActionSummary, Phase
from gateway._pending import Pending
from policies import Demand

Key = tuple[str, str]
"""(run, action name)."""

GroupKey = tuple[Demand, str, str | None, tuple[float, str] | None]
"""(the demand without `waited_seconds`, run, parent, queue limit)."""


_NO_ACTION = ActionSummary(name="", parent=None, task="", phase=Phase.QUEUED)


def group_key(pending: Pending) -> GroupKey:
    """The group `pending`'s action joins: the actions placing treats alike."""
    action = pending.action
    return (pending.demand.waited(0.0), action.run, action.parent, pending.max_wait)


class Group:
    """Queued actions placed alike, in the order they joined (entries of actions that left stay until skipped)."""

    __slots__ = ("head", "key", "keys", "project", "reasons", "size")

    def __init__(self, key: GroupKey, project: str):
        self.key = key
        self.project = project
        self.keys: list[Key] = []
        self.head = 0
        """Entries before it have left the group."""
        self.size = 0
        self.reasons: Counter[str] = Counter()
        """How many of its actions have each waiting reason recorded."""


@dataclass(frozen=True, slots=True)
class _Static:
    attempt: tuple[int, float | None]
    """(attempts, not_before) of the action it was computed for: a new attempt computes it again."""
    pending: Pending
    queued_since: float
    group: Group


class PlacementQueue:
    def __init__(self) -> None:
        self.actions: dict[Key, ActionSummary] = {}
        self.noted: dict[Key, str] = {}
        """The waiting reason last recorded for each queued action: recorded again only when it changes."""
        self._seq: dict[Key, int] = {}
        self._next = 0
        self._statics: dict[Key, _Static] = {}
        self._groups: dict[GroupKey, Group] = {}
        self._ungrouped: list[Key] = []
        """Queued actions whose `Pending` is not known yet, in arrival order (entries may be stale)."""
        self._inputs: tuple[object, ...] = ()

    def __contains__(self, key: Key) -> bool:
        return key in self.actions

    def put(self, action: ActionSummary) -> None:
        key = (action.run, action.name)
        if key not in self.actions:
            self._seq[key] = self._next
            self._next += 1
            self._ungrouped.append(key)
        self.actions[key] = action

    def drop(self, key: Key) -> None:
        """`key` left the queue (placed, ended, or failed by the placer)."""
        self.actions.pop(key, None)
        self._seq.pop(key, None)
        self.unnote(key)
        self.drop_static(key)

    # -- waiting reasons ------------------------------------------------------------------------------------------

    def note(self, key: Key, reason: str) -> None:
        self.unnote(key)
        self.noted[key] = reason
        static = self._statics.get(key)
        if static is not None:
            static.group.reasons[reason] += 1

    def unnote(self, key: Key) -> None:
        old = self.noted.pop(key, None)
        static = self._statics.get(key)
        if old is not None and static is not None:
            static.group.reasons[old] -= 1

    def forget_notes(self) -> None:
        self.noted.clear()
        for group in self._groups.values():
            group.reasons.clear()

    def all_noted(self, key: Key, reason: str) -> bool:
        """Whether every action in `key`'s group has `reason` recorded (so the rest of the group can be left)."""
        static = self._statics.get(key)
        return static is not None and static.group.reasons[reason] == static.group.size

    def waiting_reason(self, joins: GroupKey) -> str | None:
        """The reason every queued action of group `joins` has recorded, if they share one: an action joining the
        group now is behind them all, and waits for it too."""
        group = self._groups.get(joins)
        if group is None or not group.size:
            return None
        return next((reason for reason, count in group.reasons.items() if count == group.size), None)

    # -- what placing needs ---------------------------------------------------------------------------------------

    def valid_for(self, *inputs: object) -> None:
        """What every `Pending` was computed from besides the action (the default request, the policy): when one of
        them changes, every action is computed and grouped again."""
        if len(inputs) == len(self._inputs) and all(a is b for a, b in zip(inputs, self._inputs, strict=True)):
            return
        self._inputs = inputs
        self._statics.clear()
        self._groups.clear()
        self._ungrouped = sorted(self.actions, key=self._seq.__getitem__)

    def pending(self, key: Key, action: ActionSummary, now: float) -> Pending | None:
        """The `Pending` of `action` as of `now`, if it is known for this attempt."""
        static = self._statics.get(key)
        if static is None or static.attempt != (action.attempts, action.not_before):
            return None
        waited = max(0.0, now - static.queued_since)
        p = static.pending
        return p.with_action(action, p.demand.waited(waited))

    def keep(self, key: Key, pending: Pending, now: float) -> None:
        """Remember what placing `key` needs, and put it in its group."""
        self.drop_static(key)
        action = pending.action
        joins = group_key(pending)
        group = self._groups.get(joins)
        if group is None:
            group = self._groups[joins] = Group(joins, pending.project)
        group.keys.append(key)
        group.size += 1
        reason = self.noted.get(key)
        if reason is not None:
            group.reasons[reason] += 1
        queued_since = action.not_before or action.created_at or now
        # Kept without its action: the queue holds the current one, and a kept older one (before its waiting
        # reason was written, say) would double what a queued action costs in memory.
        kept = pending.with_action(_NO_ACTION)
        self._statics[key] = _Static((action.attempts, action.not_before), kept, queued_since, group)

    def drop_static(self, key: Key) -> None:
        static = self._statics.pop(key, None)
        if static is None:
            return
        group = static.group
        group.size -= 1
        reason = self.noted.get(key)
        if reason is not None:
            group.reasons[reason] -= 1
        if group.size == 0 and self._groups.get(group.key) is group:
            del self._groups[group.key]

    def projects(self) -> set[str]:
        return {group.project for group in self._groups.values() if group.size}

    def ungrouped(self) -> list[Key]:
        """Queued actions with no `Pending` known yet, in arrival order."""
        keys = [k for k in dict.fromkeys(self._ungrouped) if k in self.actions and k not in self._statics]
        self._ungrouped = keys
        return keys

    # -- a pass over the whole queue ------------------------------------------------------------------------------

    def walk(self, left: set[int]) -> Iterator[Key]:
        """Every grouped action, groups merged in arrival order, skipping groups whose id the caller adds to `left`."""
        heap: list[tuple[int, int, int, Group]] = []
        for number, group in enumerate(self._groups.values()):
            self._compact(group)
            if (first := self._next_live(group, group.head)) is not None:
                heap.append((self._seq[group.keys[first]], number, first, group))
        heapq.heapify(heap)
        seen: set[Key] = set()
        while heap:
            _, number, at, group = heapq.heappop(heap)
            if id(group) in left:
                continue
            key = group.keys[at]
            if key not in seen:
                seen.add(key)
                yield key
            following = self._next_live(group, at + 1)
            if following is not None:
                heapq.heappush(heap, (self._seq[group.keys[following]], number, following, group))

    def group_of(self, key: Key) -> int | None:
        static = self._statics.get(key)
        return None if static is None else id(static.group)

    def _live(self, key: Key, group: Group) -> bool:
        static = self._statics.get(key)
        return static is not None and static.group is group

    def _next_live(self, group: Group, at: int) -> int | None:
        keys = group.keys
        while at < len(keys) and not self._live(keys[at], group):
            if at == group.head:
                group.head += 1  # a left entry at the front is never looked at again
            at += 1
        return at if at < len(keys) else None

    def _compact(self, group: Group) -> None:
        if len(group.keys) - group.head > 2 * group.size + 64:
            live = dict.fromkeys(k for k in group.keys[group.head :] if self._live(k, group))
            group.keys, group.head = list(live), 0
