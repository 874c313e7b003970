"""Agent sessions: each connected agent holds a session with an epoch (fencing every older session of its cluster)
and a lease it keeps alive by heartbeating; a session whose lease ends has its work moved elsewhere.

    open ──► next epoch, lease, /flyte/sessions/<cluster> under the lease ──► adopt what older sessions were given
    heartbeat ──► lease kept alive; the session key rewritten when its free room (idle) or warm slots changed
    store watch /flyte/sessions/ ─► `live`: every connected cluster, whichever replica holds its agent (epoch, warm
                               │    slots, free room through `Reservations.rebase`): what the leader places onto
                               └─► a session key expired ──► (the leader) that session's placed/running actions fail
                                    as system errors (`ClusterLost`), which the retry policy requeues

The lease, not the socket, decides when work moves: an agent that reconnects within its lease keeps its work.
The session key's value is a `SessionState`; each rewrite compares the key's revision, so only the session that
wrote it last (the current one) rewrites it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel, Field

from flyte._background import Background
from flyte._clock import SYSTEM_CLOCK, Clock
from flyte._env import env_float
from flyte._retrying import RetryDelay
from flyte._wire import (
    DEFAULT_REQUEST,
    AbortMessage,
    ActionEvent,
    ActionSummary,
    AttemptKey,
    CloseCode,
    ClusterRecord,
    Phase,
)
from flyte.errors import RuntimeSystemError
from gateway._action_index import TEMPORARY, InFlight, watch_retry
from gateway._agent_outbox import AgentOutbox
from gateway._domain_errors import DomainError
from gateway._keys import CLUSTERS, EPOCH_KEY, SESSIONS, cluster_key, session_key
from gateway._pending import default_request
from gateway._reservations import Attempt, Reservations
from gateway._runs import Runs
from gateway.store import Compare, EventType, Put, Store, StoreError

log = logging.getLogger("flyte.gateway.dispatch")

LEASE_TTL = env_float("FLYTE_LEASE_TTL", 10.0)
"""Seconds an agent may go silent before its work is moved to another cluster (tests shorten it)."""
HEARTBEAT_INTERVAL = 1.0

_LIVE = (Phase.PLACED, Phase.RUNNING)


class SessionState(BaseModel):
    """The value of a session key: what the leader needs of a cluster whose agent another replica may hold."""

    epoch: int
    free: dict[str, float] = Field(default_factory=dict)
    """The agent's last report of its free room taken as a base: when its session opened, or later when it ran
    nothing (a busy agent's reports lag its assignments, so they are not)."""
    running: list[str] = Field(default_factory=list)
    """The attempts (run/action/attempt) the agent ran at that report, which `free` already excludes."""
    warm: dict[str, int] = Field(default_factory=dict)
    connected: bool = True
    """False once its agent's socket closed: no new work goes there, and what it holds waits for the agent to come
    back within the lease (or moves when the lease ends)."""


@dataclass
class AgentSession:
    """A connected agent: where to send assignments, and what it has room for."""

    record: ClusterRecord
    epoch: int
    lease: int
    ws: web.WebSocketResponse
    free: dict[str, float]
    """The cluster's live free room, kept by `Reservations`: what placed attempts hold is taken at once and given
    back when they end, not at the next heartbeat."""
    warm: dict[str, int] = field(default_factory=dict)
    outbox: AgentOutbox = field(default_factory=AgentOutbox)

    projects: set[str] = field(default_factory=set)
    """The projects of the work this session was given: what its agent may read (bundles, task specs)."""
    runs: set[str] = field(default_factory=set)
    """The runs this session was given work in: whose spans its agent may send."""
    spans: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Spans its agent sent per run, against `SPAN_LIMIT`."""
    log_attempts: dict[tuple[str, str, int], int] = field(default_factory=dict)
    """Attempts whose logs this session may send, once checked (logs come in batches, several a second), with the
    bytes each has logged so far (against `LOG_LIMIT`)."""
    sent: set[AttemptKey] = field(default_factory=set)
    """Attempts whose assignment is in `outbox` (the placer's and the action watch's paths must not both send)."""
    held: set[AttemptKey] = field(default_factory=set)
    """Attempts given to the pool worker that submitted them as well (`GatewayReply.here`), not yet sent: whichever
    path sends one marks it held, so the agent waits for that worker instead of running it too."""
    key_revision: int = 0
    """The session key's revision as this session last wrote it (each rewrite compares it)."""
    state: SessionState | None = None
    """What this session last wrote to its session key."""

    @property
    def name(self) -> str:
        return self.record.name


def session_state(value: bytes) -> SessionState:
    """A session key's value (an epoch alone, as written before replicas placed remotely, reads as one too)."""
    text = value.decode()
    return SessionState(epoch=int(text)) if text.isdigit() else SessionState.model_validate_json(text)


@dataclass
class LiveCluster:
    """A connected cluster as the store says, whichever replica holds its agent."""

    epoch: int
    warm: dict[str, int]


class AgentSessions:
    """The connected agents, the clusters ever registered, and moving work off clusters whose lease ended."""

    def __init__(
        self,
        store: Store,
        runs: Runs,
        reservations: Reservations,
        in_flight: InFlight,
        run_project: Callable[[str], Awaitable[str]],
        rescan: Callable[[], None],
        *,
        clock: Clock = SYSTEM_CLOCK,
        lease_ttl: float = LEASE_TTL,
        retry: Callable[[], RetryDelay] = watch_retry,
    ):
        self._store = store
        self._runs = runs
        self._reservations = reservations
        self._in_flight = in_flight
        self._run_project = run_project
        self._rescan = rescan
        self._clock = clock
        self._lease_ttl = lease_ttl
        self._retry = retry
        self.sessions: dict[str, AgentSession] = {}
        self.known: dict[str, ClusterRecord] = {}
        """Every registered cluster, connected or not: a demand that fits one that is down waits rather than fails."""
        self.undelivered: Callable[[ActionSummary], None] | None = None
        """Where an attempt placed for a session before it was held here goes to be sent (the dispatcher's)."""
        self.default_request: Mapping[str, float] = DEFAULT_REQUEST
        """What a one-off action counts as holding where it declares nothing: see `default_request`."""
        self._closing = Background()
        self.live: dict[str, LiveCluster] = {}
        """Every cluster with a session key, on whichever replica its agent is: where the leader places."""
        self._key_revision: dict[str, int] = {}
        """The store revision of the newest session key (or its deletion) taken for each cluster."""
        self._based_on: dict[str, _Report] = {}
        """The agent report each cluster's free room was last based on (`_stated`)."""
        self.leading = False
        """Whether this replica leads: only the leader moves the work of a cluster whose session ended."""

    async def load(self) -> None:
        """Read every registered cluster (at start)."""
        clusters, _ = await self._store.range(CLUSTERS)
        self.known = {kv.key.removeprefix(CLUSTERS): ClusterRecord.model_validate_json(kv.value) for kv in clusters}
        self.default_request = default_request(self.known.values())

    async def load_live(self) -> int:
        """Read every session key (at start, and on taking the lead); returns the revision read at."""
        sessions, revision = await self._store.range(SESSIONS)
        keys = {kv.key.removeprefix(SESSIONS): kv for kv in sessions}
        # A session opened (here, or seen through the watch) while the read was on its way is newer than the read:
        # it stays. Only what the read says is gone, and nothing newer says otherwise, goes.
        for cluster in [c for c in self.live if c not in keys and self._key_revision.get(c, 0) <= revision]:
            del self.live[cluster]
        for cluster, kv in keys.items():
            await self._stated(cluster, kv.value, kv.mod_revision)
        return revision

    async def _stated(self, cluster: str, value: bytes, revision: int) -> None:
        """A session key was written (at `revision`): the cluster is live at its epoch, with this room. A version
        older than one already taken (a read that raced the watch) changes nothing."""
        if revision < self._key_revision.get(cluster, 0):
            return
        self._key_revision[cluster] = revision
        try:
            state = session_state(value)
        except ValueError:
            log.warning("ignoring the unreadable session key of %s", cluster)
            return
        known = self.live.get(cluster)
        if known is None or known.epoch != state.epoch:
            kv = await self._store.get(cluster_key(cluster))
            if kv is not None:
                self.known[cluster] = ClusterRecord.model_validate_json(kv.value)
                self.default_request = default_request(self.known.values())
        if not state.connected:
            self.live.pop(cluster, None)  # placement passes it by; its lease decides about the work it holds
            return
        # Seen late (after placements since) it is still right: what those hold is subtracted from the base. Seen
        # again (taking the lead, a re-list, a busy agent's key rewritten for its warm slots) it is not: an attempt
        # it lists that ended since was released, and the base still leaves its room out for as long as the agent
        # stays busy. So a report is the base once.
        report = _report_of(state)
        if self._based_on.get(cluster) != report:
            self._reservations.rebase(cluster, state.free, {attempt_of(key) for key in state.running})
            self._based_on[cluster] = report
        self.live[cluster] = LiveCluster(state.epoch, state.warm)
        self._rescan()

    async def fail_over_vanished(self, live: set[str]) -> None:
        """Work placed on clusters whose sessions vanished while no gateway was watching (not `live`) moves now."""
        for cluster in self._in_flight.clusters():
            # Read again: a session opened since `live` was read (on any replica) keeps its cluster's work.
            if cluster not in live and await self._store.get(session_key(cluster)) is None:
                await self.fail_over(cluster, "its agent's session ended while the gateway was down")

    def send(self, cluster: str, message: str) -> None:
        """Queue a message for `cluster`'s agent, if it is connected."""
        session = self.sessions.get(cluster)
        if session is not None:
            session.outbox.put_nowait(message)

    def abort(self, cluster: str, keys: list[str]) -> None:
        """Tell `cluster`'s agent to stop these attempts (run/action/attempt)."""
        self.send(cluster, AbortMessage(keys=keys).model_dump_json())

    # -- opening, heartbeats, closing ---------------------------------------------------------------------------

    async def open_session(
        self,
        record: ClusterRecord,
        ws: web.WebSocketResponse,
        running: Sequence[str] = (),
        reporting: Sequence[str] = (),
    ) -> AgentSession:
        """Register a cluster's agent with a new epoch (fencing every older session) and a lease.

        `running` are the attempt keys (run/action/attempt) the agent says it still runs, `reporting` those that
        ended with their end still in its outbox: see `_adopt`.
        """
        epoch = await self._next_epoch()
        lease = await self._store.grant_lease(self._lease_ttl)
        record = record.model_copy(update={"epoch": epoch, "last_heartbeat": self._clock.time(), "healthy": True})
        await self._store.put(cluster_key(record.name), record.model_dump_json().encode())
        self.known[record.name] = record
        self.default_request = default_request(self.known.values())
        state = SessionState(epoch=epoch, free=dict(record.free), running=list(running))
        revision = await self._store.put(session_key(record.name), state.model_dump_json().encode(), lease=lease.id)
        old = self.sessions.get(record.name)
        free = self._reservations.rebase(record.name, dict(record.free), {attempt_of(key) for key in running})
        self._based_on[record.name] = _report_of(state)
        self._key_revision[record.name] = max(self._key_revision.get(record.name, 0), revision)
        session = AgentSession(
            record=record, epoch=epoch, lease=lease.id, ws=ws, free=free, key_revision=revision, state=state
        )
        self.sessions[record.name] = session
        self.live[record.name] = LiveCluster(epoch, {})
        if old is not None and old.ws is not ws:
            with contextlib.suppress(Exception):
                await old.ws.close(code=CloseCode.REPLACED, message=b"replaced by a newer session")
        await self._adopt(session, set(running), set(reporting))
        self._rescan()
        return session

    async def _adopt(self, session: AgentSession, running: set[str], reporting: set[str]) -> None:
        """Reconcile a new session with the work older sessions of its cluster were given.

        The session key is put again under the new lease, so the old lease expiring moves nothing: work placed
        there that the agent does not run (it crashed and restarted, or the assignment was lost with the gateway)
        moves now. Attempts the agent runs that are no longer current there (moved while it was away) are
        aborted, so it drops orphaned work instead of finishing it for nothing. Attempts it is `reporting` stay as
        they are: their end is on its way; so do those their worker ended by its own report (still exiting).
        """
        kept: set[str] = set()
        for run, name in self._in_flight.in_flight(session.name):
            with contextlib.suppress(DomainError):
                current = await self._runs.get_action(run, name)
                key = str(AttemptKey(run, name, current.attempts))
                if current.cluster != session.name or current.phase not in _LIVE:
                    continue
                if key in running or key in reporting:
                    kept.add(key)
                    session.projects.add(await self._run_project(run))
                    session.runs.add(run)
                elif current.epoch < session.epoch:
                    await self._lose(current, session.name, "its agent restarted without it")
                elif current.phase is Phase.PLACED and self.undelivered is not None:
                    # Placed for this very session (by the leader, on seeing its key) before it was held here: the
                    # action watch found no session of that epoch to send it to, and passed it by.
                    self.undelivered(current)
        orphans = [key for key in sorted(running - kept) if not await self._ended_by_its_report(session.name, key)]
        if orphans:
            log.info("%s runs %d attempts that are no longer its own; aborting them", session.name, len(orphans))
            session.outbox.put_nowait(AbortMessage(keys=orphans).model_dump_json())

    async def _ended_by_its_report(self, cluster: str, key: str) -> bool:
        """Whether the attempt `key` the agent still runs is its action's current one, here, and ended by its own
        report (the worker's, straight to the gateway): its process is exiting, sending its last spans and logs, and
        is left to, as it would be had the agent not reconnected. One the gateway failed as lost is orphaned."""
        try:
            attempt = AttemptKey.parse(key)
            current = await self._runs.get_action(attempt.run, attempt.action)
        except (ValueError, DomainError):
            return False
        lost = current.error is not None and current.error.code == "ClusterLost"
        return (
            current.cluster == cluster
            and current.attempts == attempt.attempt
            and current.phase in (Phase.SUCCEEDED, Phase.FAILED)
            and not lost
        )

    async def heartbeat(
        self, session: AgentSession, free: dict[str, float], warm: dict[str, int], running: int = 0
    ) -> None:
        await self._store.keepalive(session.lease)
        # Free capacity is the gateway's own account (the agent's report less what is placed there since): the
        # agent's lags the assignments on their way to it. An idle agent's report is the truth to start from again,
        # which also ends any under-count left by orphans it ran when its session opened.
        if running == 0:
            self._reservations.rebase(session.name, free, set())
        session.warm = warm
        await self._state(session, free if running == 0 else None, warm)
        self._rescan()

    async def _state(self, session: AgentSession, idle_free: dict[str, float] | None, warm: dict[str, int]) -> None:
        """Tell the leader (through the session key) what changed: warm slots, or the free room of an idle agent (a
        busy one's base stays the last one written). Unchanged, nothing is written: a heartbeat renews a lease."""
        last = session.state or SessionState(epoch=session.epoch)
        base = {"free": idle_free, "running": []} if idle_free is not None else {}
        state = last.model_copy(update={**base, "warm": warm})
        if state == last:
            return
        key = session_key(session.name)
        put = Put(key, state.model_dump_json().encode(), session.lease)
        result = await self._store.txn([Compare(key, session.key_revision)], [put])
        if result.succeeded:
            session.key_revision, session.state = result.revision, state

    def close_session(self, session: AgentSession) -> None:
        """The connection closed: nothing new is placed there (the session key says so, for the leader wherever it
        runs); the lease, not the socket, decides when its work moves."""
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]
            self._closing.spawn(self._disconnected(session))

    async def _disconnected(self, session: AgentSession) -> None:
        state = (session.state or SessionState(epoch=session.epoch)).model_copy(update={"connected": False})
        key = session_key(session.name)
        # Only over this session's own write: a newer session of the cluster (a reconnect) has rewritten the key.
        with contextlib.suppress(StoreError):
            put = Put(key, state.model_dump_json().encode(), session.lease)
            await self._store.txn([Compare(key, session.key_revision)], [put])

    async def _next_epoch(self) -> int:
        while True:
            kv = await self._store.get(EPOCH_KEY)
            epoch = int(kv.value) + 1 if kv is not None else 1
            result = await self._store.txn(
                [Compare(EPOCH_KEY, kv.mod_revision if kv else 0)], [Put(EPOCH_KEY, str(epoch).encode())]
            )
            if result.succeeded:
                return epoch

    # -- leases ending ------------------------------------------------------------------------------------------

    async def watch(self, start: int) -> None:
        """Move the work of every session whose key is deleted from revision `start` on; returns only by raising
        (cancelled, or a bug: a store outage re-lists once the store answers)."""
        try:
            await self._watch(start)
        except Exception:
            log.exception("the session watch stopped on a bug")
            raise

    async def _watch(self, start: int) -> None:
        while True:
            try:
                async for batch in self._store.watch(SESSIONS, start):
                    for event in batch:
                        start = event.mod_revision + 1
                        cluster = event.key.removeprefix(SESSIONS)
                        if event.type is EventType.DELETE:
                            self._key_revision[cluster] = event.mod_revision
                            await self._session_gone(cluster)
                        else:
                            await self._stated(cluster, event.value, event.mod_revision)
            except TEMPORARY as error:
                # A session that expired while the watch was down shows only as a missing key: look for those.
                log.warning("the session watch failed (%s: %s); re-listing", type(error).__name__, error)
                start = await self._relist()

    async def _relist(self) -> int:
        retry = self._retry()
        while True:
            await self._clock.sleep(retry.next())
            try:
                kvs, revision = await self._store.range(SESSIONS)
                live = {kv.key.removeprefix(SESSIONS) for kv in kvs}
                for kv in kvs:
                    await self._stated(kv.key.removeprefix(SESSIONS), kv.value, kv.mod_revision)
                gone = {*self._in_flight.clusters(), *self.sessions, *self.live} - live
                for cluster in sorted(gone):
                    await self._session_gone(cluster)
                return revision + 1
            except TEMPORARY as error:
                log.warning("re-listing sessions failed (%s); retrying within %.1fs", error, retry.ceiling)

    async def _session_gone(self, cluster: str) -> None:
        """A cluster's session key is gone (its lease expired): unless a new session replaced it, move its work."""
        session = self.sessions.get(cluster)
        if await self._store.get(session_key(cluster)) is not None:
            return
        self.live.pop(cluster, None)
        if session is not None:
            self.sessions.pop(cluster, None)
            with contextlib.suppress(Exception):
                await session.ws.close(code=CloseCode.LEASE_EXPIRED, message=b"lease expired")
        if self.leading:
            await self.fail_over(cluster, "its agent stopped heartbeating (lease expired)")

    async def fail_over(self, cluster: str, why: str) -> None:
        """Every action placed on or running in `cluster` fails as a system error: the retry policy moves it."""
        for run, name in self._in_flight.in_flight(cluster):
            with contextlib.suppress(DomainError):
                current = await self._runs.get_action(run, name)
                if current.cluster != cluster or current.phase not in _LIVE:
                    continue
                await self._lose(current, cluster, why)
        log.warning("cluster %s lost: %s", cluster, why)

    async def _lose(self, current: ActionSummary, cluster: str, why: str) -> None:
        """Fail the current attempt of an action as a system error (`ClusterLost`): the retry policy moves it."""
        error = RuntimeSystemError.info(f"cluster {cluster} was lost: {why}", code="ClusterLost", worker=cluster)
        run, name, attempt, epoch = current.run, current.name, current.attempts, current.epoch
        if current.phase is Phase.PLACED:
            await self._runs.report(
                run, name, ActionEvent(phase=Phase.RUNNING, attempt=attempt, cluster=cluster, epoch=epoch)
            )
        await self._runs.report(
            run, name, ActionEvent(phase=Phase.FAILED, attempt=attempt, cluster=cluster, epoch=epoch, error=error)
        )


_Report = tuple[int, tuple[tuple[str, float], ...], tuple[str, ...]]


def _report_of(state: SessionState) -> _Report:
    """What an agent reported of its room: the session's epoch, its free room and the attempts it ran then."""
    return state.epoch, tuple(sorted((state.free or {}).items())), tuple(sorted(state.running))


def attempt_of(key: str) -> Attempt:
    """An agent's attempt key (run/action/attempt) as a reservation's key; a malformed one matches nothing."""
    try:
        return AttemptKey.parse(key)
    except ValueError:
        return (key, "", -1)
