"""Cluster administration: the placement policy and cordons an operator applies, and the views of clusters the API
and `/metrics` show (connection, free room, warm slots, cordon; reserved room per cluster).

Both the policy and the cordons are kept in the store (read again at start) and held here for the placer, which is
told (`changed`) to look at the whole queue again whenever either changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flyte._clock import SYSTEM_CLOCK, Clock
from flyte._wire import AttemptKey, ClusterRecord, CordonRecord, Phase, PolicyDocument
from gateway._action_index import InFlight
from gateway._keys import CORDONS, POLICY_KEY, cordon_key
from gateway._metrics import ClusterRoom
from gateway._reservations import Reservations
from gateway._runs import Runs
from gateway._sessions import AgentSessions
from gateway.store import Delete, Store
from policies import DEFAULT_POLICY, Policy, parse_policy

log = logging.getLogger("flyte.gateway.dispatch")


class ClusterAdmin:
    """The policy placement follows and the clusters it must not place on."""

    def __init__(
        self,
        store: Store,
        runs: Runs,
        sessions: AgentSessions,
        in_flight: InFlight,
        reservations: Reservations,
        changed: Callable[[], None],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self._store = store
        self._runs = runs
        self._sessions = sessions
        self._in_flight = in_flight
        self._reservations = reservations
        self._changed = changed
        self._clock = clock
        self.policy: Policy = DEFAULT_POLICY
        self.policy_document = PolicyDocument(text="version: default\n", version="default")
        self.cordons: dict[str, CordonRecord] = {}

    async def load(self) -> None:
        """Read the cordons and the policy (at start)."""
        cordons, _ = await self._store.range(CORDONS)
        self.cordons = {kv.key.removeprefix(CORDONS): CordonRecord.model_validate_json(kv.value) for kv in cordons}
        stored = await self._store.get(POLICY_KEY)
        if stored is not None:
            document = PolicyDocument.model_validate_json(stored.value)
            self.policy, self.policy_document = parse_policy(document.text), document

    async def apply_policy(self, text: str, source: str = "policy") -> PolicyDocument:
        """Validate and store a policy document; the next placement pass uses it. ValueError names line and field."""
        policy = parse_policy(text, source)
        document = PolicyDocument(text=text, version=policy.version, applied_at=self._clock.time())
        await self._store.put(POLICY_KEY, document.model_dump_json().encode())
        self.policy, self.policy_document = policy, document
        self._changed()
        log.info("placement policy %s applied", policy.version)
        return document

    async def cordon(self, cluster: str, reason: str, drain: bool) -> None:
        """No new work lands on `cluster`; with `drain`, its placed work that has not started moves elsewhere."""
        record = CordonRecord(reason=reason, drain=drain, at=self._clock.time())
        await self._store.put(cordon_key(cluster), record.model_dump_json().encode())
        self.cordons[cluster] = record
        if drain:
            why = f"moved off {cluster}, which is draining: {reason}"
            for run, name in self._in_flight.in_flight(cluster):
                current = await self._runs.get_action(run, name)
                if current.phase is Phase.PLACED and await self._runs.requeue_placed(run, name, cluster, why):
                    self._sessions.abort(cluster, [str(AttemptKey(run, name, current.attempts))])
        self._changed()

    async def uncordon(self, cluster: str) -> None:
        await self._store.txn([], [Delete(cordon_key(cluster))])
        self.cordons.pop(cluster, None)
        self._changed()

    def cluster_view(self, record: ClusterRecord) -> ClusterRecord:
        """A stored cluster record with what the gateway knows now: connection, free room, warm slots, cordon."""
        session = self._sessions.sessions.get(record.name)
        cordon = self.cordons.get(record.name)
        update: dict[str, object] = {
            "connected": session is not None,
            "healthy": session is not None,
            "cordoned": cordon is not None,
            "cordon_reason": cordon.reason if cordon else None,
            "draining": bool(cordon and cordon.drain),
        }
        if session is not None:
            update |= {"free": dict(session.free), "warm": dict(session.warm), "epoch": session.epoch}
        return record.model_copy(update=update)

    def rooms(self) -> list[ClusterRoom]:
        """Every known cluster's reserved and free room (the `/metrics` gauges)."""
        sessions = self._sessions.sessions
        names = sorted({*self._sessions.known, *sessions, *self._reservations.clusters()})
        return [
            ClusterRoom(
                cluster=name,
                reserved=self._reservations.reserved(name),
                free=dict(sessions[name].free) if name in sessions else None,
                attempts=self._reservations.holding(name),
            )
            for name in names
        ]
