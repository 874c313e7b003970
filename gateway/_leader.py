"""Leader election among gateway replicas that share one store: one replica runs the work that must run once (the
placement pass, timers, schedules, retention); every replica serves the API and connections.

    campaign ──► txn(LEADER absent ──► put LEADER {replica} with a lease) ──► won: term = the key's revision
        │                                                                     └─► lead(term) runs until deposed
        └─► lost: watch LEADER until it is deleted (its lease expired or was revoked) ──► campaign again

A term is fenced twice. In the store: every write a leader makes on the strength of its leadership carries
`fence()`, a compare on the LEADER key's revision, so a leader that was paused past its lease (and replaced) has its
writes refused even before it notices. In the process: a leader that has not renewed its lease within `ttl` of the
last successful renewal (measured on the monotonic clock from before the renewal was sent) stops leading on its own,
so it does not act on a leadership it may have lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from flyte._retrying import RetryDelay
from gateway._keys import LEADER_KEY
from gateway.store import (
    Compare,
    EventType,
    LeaseNotFound,
    Put,
    Store,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger("flyte.gateway.leader")


Lead = Callable[[int], Coroutine[Any, Any, None]]
"""What a replica does while it leads, given its term; cancelled when the term ends."""


@dataclass(frozen=True)
class LeaderInfo:
    replica: str
    endpoint: str
    term: int
    """The LEADER key's revision when this replica took it: the fencing token."""


async def current_leader(store: Store) -> LeaderInfo | None:
    kv = await store.get(LEADER_KEY)
    if kv is None:
        return None
    body = json.loads(kv.value)
    return LeaderInfo(replica=str(body["replica"]), endpoint=str(body.get("endpoint", "")), term=kv.mod_revision)


class Election:
    """Campaigns for leadership for as long as `run()` runs, and runs `lead(term)` while this replica leads."""

    def __init__(
        self,
        store: Store,
        replica: str,
        lead: Lead,
        *,
        ttl: float = 10.0,
        endpoint: str = "",
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if ttl <= 0:
            raise ValueError(f"a leader lease needs a positive TTL, not {ttl}")
        self.store = store
        self.replica = replica
        self.endpoint = endpoint
        self.ttl = ttl
        self._lead = lead
        self._monotonic = monotonic
        self.term: int | None = None
        """This replica's term while it leads, else None."""
        self._lease = 0
        self.changed = asyncio.Event()
        """Set (and cleared by whoever waits) whenever this replica gains or loses the lead."""

    @property
    def leading(self) -> bool:
        return self.term is not None

    def fence(self) -> Compare:
        """The compare every leader-only write carries: it holds only while this replica's term is the current one."""
        if self.term is None:
            raise NotLeader(f"replica {self.replica} does not lead")
        return Compare(LEADER_KEY, self.term)

    async def run(self) -> None:
        delay = RetryDelay(min(0.2, self.ttl / 2), self.ttl / 2)
        while True:
            try:
                term = await self._campaign()
                delay.reset()
                if term is None:
                    await self._wait_for_vacancy()
                    continue
                await self._hold(term)
            except asyncio.CancelledError:
                await self._resign()
                raise
            except (StoreUnavailable, LeaseNotFound) as error:
                log.warning("leader election: %s; trying again", error)
                await delay.sleep()

    async def _campaign(self) -> int | None:
        lease = await self.store.grant_lease(self.ttl)
        body = json.dumps({"replica": self.replica, "endpoint": self.endpoint, "since": time.time()}).encode()
        result = await self.store.txn([Compare(LEADER_KEY, 0)], [Put(LEADER_KEY, body, lease.id)], [])
        if not result.succeeded:
            with contextlib.suppress(StoreError):
                await self.store.revoke(lease.id)
            return None
        self._lease = lease.id
        return result.revision

    async def _wait_for_vacancy(self) -> None:
        kv = await self.store.get(LEADER_KEY)
        if kv is None:
            return
        async for batch in self.store.watch(LEADER_KEY, kv.mod_revision + 1):
            if any(event.key == LEADER_KEY and event.type is EventType.DELETE for event in batch):
                return

    async def _hold(self, term: int) -> None:
        """Lead until the lease cannot be renewed in time; then stop leading and return (to campaign again)."""
        renewed_at = self._monotonic()
        self.term = term
        self.changed.set()
        log.info("replica %s leads (term %d)", self.replica, term)
        leading = asyncio.create_task(self._lead(term), name=f"lead-{term}")
        try:
            while True:
                done, _ = await asyncio.wait({leading}, timeout=self.ttl / 3)
                if done:
                    # The work a leader does runs until cancelled: its end is a bug, said loudly.
                    leading.result()
                    raise RuntimeError("the leader's work ended on its own")
                sent_at = self._monotonic()
                try:
                    # `asyncio.timeout`, not `wait_for`: on Python 3.11 a cancel that lands as the renewal answers is
                    # swallowed by `wait_for`, and this loop would lead on after being told to stop.
                    async with asyncio.timeout(self.ttl / 3):
                        await self.store.keepalive(self._lease)
                    renewed_at = sent_at
                except (StoreUnavailable, TimeoutError) as error:
                    if self._monotonic() - renewed_at >= self.ttl:
                        log.warning(
                            "replica %s stops leading: no lease renewal for %.1fs (%s)", self.replica, self.ttl, error
                        )
                        return
                except LeaseNotFound:
                    log.warning("replica %s stops leading: its lease expired (term %d)", self.replica, term)
                    return
        finally:
            self.term = None
            self.changed.set()
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading

    async def _resign(self) -> None:
        """On shutdown, hand over at once instead of after a TTL: revoke the lease, which deletes the LEADER key."""
        lease, self._lease = self._lease, 0
        if lease:
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.store.revoke(lease)


class NotLeader(RuntimeError):
    """A leader-only write was attempted by a replica that does not lead."""
