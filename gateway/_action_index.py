"""The action index: one watch over every action keeps what the other dispatcher parts ask about each action, and
tells workers waiting on a parent of each of its children that ends.

    store watch /flyte/actions/ ──► observe ──► parent (while not ended), cluster (while placed or running),
                               │               actions in flight per cluster ──► `on_action` (queue, reservations,
                               │                                                    aborts to agents)
                               └─► children of a watched parent that end ──► the workers waiting on them

A watch that fails for a reason that passes (the store is unreachable, the watch fell behind a compaction) re-lists
once the store answers again, since what changed meanwhile is only in a fresh range. Any other failure is a bug: it
is logged with its traceback and ends the watch, rather than re-listing forever.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

from flyte._clock import SYSTEM_CLOCK, Clock
from flyte._retrying import RetryDelay
from flyte._wire import ActionSummary, GatewayReply, Phase
from gateway._decoded import DecodedActions
from gateway._judging import readable_action
from gateway._keys import ACTIONS
from gateway.store import EventType, Store, StoreError

log = logging.getLogger("flyte.gateway.dispatch")

TEMPORARY = (StoreError, ConnectionError, TimeoutError)
"""Failures a watch loop outlives (it retries with backoff); anything else ends the loop as a bug."""

Key = tuple[str, str]
"""(run, action name)."""
Send = Callable[[GatewayReply], Awaitable[None]]
ListChildren = Callable[[str, str], Awaitable[tuple[list[ActionSummary], int]]]


class InFlight(Protocol):
    """Which actions are placed on or running in each cluster (what the sessions and a drain move)."""

    def in_flight(self, cluster: str) -> list[Key]: ...

    def clusters(self) -> list[str]: ...


def watch_retry() -> RetryDelay:
    """The backoff of a watch loop's re-list while the store does not answer."""
    return RetryDelay(0.5, 5.0)


class ActionIndex:
    """What the dispatcher knows of every action, rebuilt from a range and kept by a watch."""

    def __init__(
        self,
        store: Store,
        list_children: ListChildren,
        on_action: Callable[[ActionSummary], None],
        *,
        clock: Clock = SYSTEM_CLOCK,
        retry: Callable[[], RetryDelay] = watch_retry,
        decoded: DecodedActions | None = None,
    ):
        self._decoded = decoded or DecodedActions()
        self._store = store
        self._list_children = list_children
        self._on_action = on_action
        self._clock = clock
        self._retry = retry
        self.revision = 0
        self.parents: dict[Key, str] = {}
        """The parent of each action that has not ended (for what its ancestors hold)."""
        self.where: dict[Key, str] = {}
        """The cluster of each placed or running action (for the locality of its children)."""
        self._inflight: dict[str, set[Key]] = defaultdict(set)
        self._watchers: dict[Key, set[Send]] = defaultdict(set)

    def in_flight(self, cluster: str) -> list[Key]:
        """The actions placed on or running in `cluster`, as last seen."""
        return list(self._inflight.get(cluster, ()))

    def clusters(self) -> list[str]:
        """Every cluster that has had work in flight since the gateway started."""
        return list(self._inflight)

    async def load(self) -> list[ActionSummary]:
        """Observe every stored action; returns them (the revision they were read at is `revision`)."""
        kvs, self.revision = await self._store.range(ACTIONS)
        actions = [self._decoded.decode(kv.key, kv.value, kv.mod_revision) for kv in kvs]
        for action in actions:
            self.observe(action)
        return actions

    def observe(self, action: ActionSummary) -> None:
        key = (action.run, action.name)
        if action.parent is not None and not action.phase.is_terminal:
            self.parents[key] = action.parent
        else:
            self.parents.pop(key, None)
        if action.cluster is not None and action.phase in (Phase.PLACED, Phase.RUNNING):
            self.where[key] = action.cluster
        else:
            self.where.pop(key, None)
        for cluster, keys in self._inflight.items():
            if cluster != action.cluster:
                keys.discard(key)
        self._on_action(action)
        if action.cluster is not None and action.phase in (Phase.PLACED, Phase.RUNNING):
            self._inflight[action.cluster].add(key)
        elif action.cluster is not None:
            self._inflight[action.cluster].discard(key)

    # -- the watch ----------------------------------------------------------------------------------------------

    async def watch(self, start: int) -> None:
        """Observe every change from revision `start` on; returns only by raising (cancelled, or a bug)."""
        try:
            await self._watch(start)
        except Exception:
            log.exception("the action watch stopped on a bug")
            raise

    async def _watch(self, start: int) -> None:
        while True:
            try:
                async for batch in self._store.watch(ACTIONS, start):
                    changed: dict[Key, list[ActionSummary]] = defaultdict(list)
                    ended: list[Key] = []
                    seen: list[ActionSummary] = []
                    for event in batch:
                        if event.type is not EventType.PUT:
                            continue
                        action = readable_action(event.key, event.value, event.mod_revision, self._decoded)
                        if action is None:
                            continue
                        seen.append(action)
                        if action.parent is not None and action.phase.is_terminal:
                            # A waiting worker acts on a child's end only: the changes before it are not sent
                            # (in a fan-out they were four messages in five, each encoded here and parsed there).
                            changed[(action.run, action.parent)].append(action)
                    start = batch[-1].mod_revision + 1
                    self.revision = batch[-1].mod_revision
                    # The news first: a chain's parent waits on it for its next call, and nothing observing does
                    # (room given back, a pass asked for) is needed before that call arrives.
                    for key, actions in changed.items():
                        await self._notify(key, actions)
                    for action in seen:
                        self.observe(action)
                        if action.phase.is_terminal:
                            ended.append((action.run, action.name))
                    self._forget_watchers(ended)
            except TEMPORARY as error:
                log.warning("the action watch failed (%s: %s); re-listing", type(error).__name__, error)
                start = await self._relist()

    async def _relist(self) -> int:
        """Observe a fresh range and tell watching workers where their children are now (a change missed by the
        watch would leave a parent waiting); returns the revision to watch from."""
        retry = self._retry()
        while True:
            await self._clock.sleep(retry.next())
            try:
                kvs, revision = await self._store.range(ACTIONS)
                break
            except TEMPORARY as error:
                log.warning("re-listing actions failed (%s); retrying within %.1fs", error, retry.ceiling)
        children: dict[Key, list[ActionSummary]] = defaultdict(list)
        ended: list[Key] = []
        for kv in kvs:
            action = readable_action(kv.key, kv.value, kv.mod_revision, self._decoded)
            if action is None:
                continue
            self.observe(action)
            if action.phase.is_terminal:
                ended.append((action.run, action.name))
            if action.parent is not None and (action.run, action.parent) in self._watchers:
                children[(action.run, action.parent)].append(action)
        self.revision = revision
        for key, actions in children.items():
            await self._notify(key, actions)
        self._forget_watchers(ended)
        return revision + 1

    # -- workers waiting on children ----------------------------------------------------------------------------

    async def _notify(self, key: Key, actions: list[ActionSummary]) -> None:
        for send in list(self._watchers.get(key, ())):
            # A worker whose socket is closing misses this; it re-watches (and gets everything) when it reconnects.
            with contextlib.suppress(Exception):
                await send(GatewayReply(type="children", run=key[0], parent=key[1], actions=actions))

    async def watch_children(self, run: str, parent: str, send: Send, request_id: int = 0) -> None:
        """Send the children `parent` has now, then each one that ends (until `unwatch`)."""
        self._watchers[(run, parent)].add(send)
        children, _ = await self._list_children(run, parent)
        await send(GatewayReply(type="children", id=request_id, run=run, parent=parent, actions=children))

    def _forget_watchers(self, parents: list[Key]) -> None:
        """A parent that ended waits on nothing: its watchers go (a pool worker's socket outlives its attempts,
        and would otherwise keep a watch per parent it ever ran)."""
        for key in parents:
            self._watchers.pop(key, None)

    def unwatch(self, send: Send) -> None:
        for key, sends in list(self._watchers.items()):
            sends.discard(send)
            if not sends:
                del self._watchers[key]
