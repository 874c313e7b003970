"""The dispatcher: the parts that move actions from the queue onto clusters, put together.

    store watch /flyte/actions/ ──► ActionIndex ──► Placer queue ──► (the leader) passes ──► placed, fenced by its term
                               │                ├─► placed on a cluster whose agent is held here ──► assignment to it
                               │                └─► aborted on a cluster ──► abort message to its agent
                               └─► children of a watched parent ──► the workers waiting on them
    a child submitted ──► (the leader, nothing queued) placed in its submission's transaction ──► assignment to it
    store watch /flyte/sessions/ ─► AgentSessions ──► live clusters (any replica's) ──► where the leader places
                                                 └─► (the leader) a lease ended ──► its work fails as `ClusterLost`
    operators ──► ClusterAdmin (policy, cordons) ──► the placer looks at the whole queue again

Each part is a module of its own (`_action_index`, `_placer`, `_sessions`, `_cluster_admin`) and takes what it uses;
this one builds them, starts their loops, and keeps the surface the connection handlers and the API use.

The store is the truth: everything here is rebuilt from a range and a watch after a restart, and several gateway
replicas share one store. Every replica keeps the queue, the index and the live clusters; the one elected leader
(`gateway/_leader.py`) runs the placement passes and moves the work of lost clusters (`lead`). The action watch is
also the assignment channel: the replica holding a cluster's agent sends it each attempt placed there in its
session's epoch when it sees the placement, so the placement write is the only write an assignment costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence

from aiohttp import web

from flyte._clock import SYSTEM_CLOCK, Clock
from flyte._wire import ActionSummary, Assignment, AttemptKey, ClusterRecord, Phase, PolicyDocument
from gateway._action_index import ActionIndex, Send
from gateway._auth import WorkerTokens
from gateway._cluster_admin import ClusterAdmin
from gateway._domain_errors import DomainError
from gateway._metrics import ClusterRoom
from gateway._placer import Placer, RunScopes, deliver_placed, pass_retry, temporary
from gateway._reservations import Reservations
from gateway._runs import Runs
from gateway._sessions import HEARTBEAT_INTERVAL, LEASE_TTL, AgentSession, AgentSessions
from gateway.store import Compare, Store

log = logging.getLogger("flyte.gateway.dispatch")

__all__ = [
    "DISPATCHER",
    "HEARTBEAT_INTERVAL",
    "LEASE_TTL",
    "AgentSession",
    "Dispatcher",
    "Send",
]


class Dispatcher:
    def __init__(
        self,
        store: Store,
        runs: Runs,
        workers: WorkerTokens | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lease_ttl: float = LEASE_TTL,
        events: Counter[str] | None = None,
    ):
        self.reservations = Reservations()
        """What placed and running attempts hold: free room per cluster, usage per project (quotas, fair share)."""
        scopes = RunScopes(runs)
        self.index = ActionIndex(store, runs.list_actions, self._observed, clock=clock, decoded=runs.decoded)
        self.agents = AgentSessions(
            store,
            runs,
            self.reservations,
            self.index,
            scopes.project,
            lambda: self.placer.rescan(),
            clock=clock,
            lease_ttl=lease_ttl,
        )
        self.admin = ClusterAdmin(
            store, runs, self.agents, self.index, self.reservations, lambda: self.placer.replan(), clock=clock
        )
        self.placer = Placer(
            runs,
            workers or WorkerTokens(store),
            scopes,
            self.agents,
            self.admin,
            self.reservations,
            self.index.parents,
            self.index.where,
            clock=clock,
            events=events,
        )
        self._clock = clock
        self._runs = runs
        self._to_assign: asyncio.Queue[ActionSummary] = asyncio.Queue()
        self.placer.undelivered = self._to_assign.put_nowait
        self.agents.undelivered = self._to_assign.put_nowait
        runs.place_at_submit = self.placer.place_at_submit
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        """Why a loop stopped on a bug (the gateway then places nothing and reports itself unhealthy)."""

    def _observed(self, action: ActionSummary) -> None:
        self.placer.observe(action)
        if action.cluster is None:
            return
        session = self.agents.sessions.get(action.cluster)
        if session is None:
            return
        key = AttemptKey(action.run, action.name, action.attempts)
        if action.phase is Phase.PLACED and action.epoch == session.epoch and key not in session.sent:
            self._to_assign.put_nowait(action)
        elif action.phase is not Phase.PLACED:
            session.sent.discard(key)
            if action.phase is Phase.ABORTED:
                self.agents.abort(action.cluster, [str(key)])

    async def _assign_observed(self) -> None:
        """Send each attempt seen placed on a cluster whose agent is held here (by whichever replica placed it); what
        was seen together goes in one message per agent."""
        retry = pass_retry()
        while True:
            seen = [await self._to_assign.get()]
            while not self._to_assign.empty():
                seen.append(self._to_assign.get_nowait())
            batches: dict[str, tuple[AgentSession, list[Assignment]]] = {}
            again: list[ActionSummary] = []
            batched: list[ActionSummary] = []
            for action in seen:
                session = self.agents.sessions.get(action.cluster or "")
                if session is None or session.epoch != action.epoch:
                    continue
                key = AttemptKey(action.run, action.name, action.attempts)
                if key in session.sent:
                    continue  # this replica's placer sent it while the event queued
                if self.placer.defer(action, session.name, session.epoch):
                    # Placed by this replica's pass, still being written: the pass sends it (made again here, its
                    # demand and a signed token would cost as much as the placement).
                    continue
                try:
                    item = await self.placer.pending(action, self._clock.time())
                    assignment = await self.placer.assignment(item, action.attempts, session.name, session.epoch)
                except Exception as error:
                    if not temporary(error):
                        raise
                    again.append(action)  # the store is away: this agent is told once it is back
                    continue
                batches.setdefault(session.name, (session, []))[1].append(assignment)
                batched.append(action)
            try:
                await deliver_placed(self._runs.store, batches.values())
            except Exception as error:
                if not temporary(error):
                    raise
                again.extend(batched)
            if again:
                log.warning("cannot make %d assignments yet (the store does not answer); trying again", len(again))
                await self._clock.sleep(retry.next())
                for action in again:
                    self._to_assign.put_nowait(action)
            else:
                retry.reset()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.agents.load()
        await self.admin.load()
        actions = await self.index.load()
        await self.placer.reserve_inflight(actions)
        await self.agents.load_live()
        start = self.index.revision + 1
        self._tasks = [
            self._supervised(self.index.watch(start), "watch-actions"),
            self._supervised(self.agents.watch(start), "watch-sessions"),
            self._supervised(self._assign_observed(), "assign"),
        ]

    async def lead(self, fence: Callable[[], Compare]) -> None:
        """The leader's part, until cancelled: placement passes whose writes carry `fence`, and moving the work of
        clusters whose session ended (also those that ended while no replica led)."""
        self.placer.fence, self.agents.leading = fence, True
        try:
            await self._take_over()
            await self.placer.run()
        except Exception as error:
            self.failure = self.failure or error
            log.critical("the dispatcher's placement loop stopped on a bug: this gateway no longer places")
            raise
        finally:
            self.placer.fence, self.agents.leading = None, False

    async def _take_over(self) -> None:
        """Before the first pass: hold what the previous leader placed since this replica started, and move the work
        of clusters whose session ended while nobody led. Tried again while the store does not answer."""
        retry = pass_retry()
        while True:
            try:
                for run, name in list(self.index.where):
                    if not self.reservations.held_by(run, name):
                        with contextlib.suppress(DomainError):
                            await self.placer.reserve_inflight([await self._runs.get_action(run, name)])
                await self.agents.load_live()
                await self.agents.fail_over_vanished(set(self.agents.live))
                self.placer.rescan()
                return
            except Exception as error:
                if not temporary(error):
                    raise
                log.warning("taking over placement failed (%s: %s); trying again", type(error).__name__, error)
                await self._clock.sleep(retry.next())

    def _supervised(self, loop: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(loop, name=name)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # The loop logged its traceback; this says what it means for the gateway.
        self.failure = self.failure or task.exception()
        log.critical("the dispatcher's %s loop stopped on a bug: this gateway no longer dispatches", task.get_name())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A loop that stopped on a bug was reported when it stopped (`failure`, `/healthz`): shutting down goes on.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- what the connection handlers, the API and the UI use ---------------------------------------------------

    @property
    def sessions(self) -> dict[str, AgentSession]:
        return self.agents.sessions

    @property
    def revision(self) -> int:
        return self.index.revision

    @property
    def policy_document(self) -> PolicyDocument:
        return self.admin.policy_document

    async def open_session(
        self,
        record: ClusterRecord,
        ws: web.WebSocketResponse,
        running: Sequence[str] = (),
        reporting: Sequence[str] = (),
    ) -> AgentSession:
        """Register a cluster's agent with a new epoch (fencing every older session) and a lease: see
        `AgentSessions.open_session` (`reporting` are attempts that ended with their end still in its outbox)."""
        return await self.agents.open_session(record, ws, running, reporting)

    async def heartbeat(
        self, session: AgentSession, free: dict[str, float], warm: dict[str, int], running: int = 0
    ) -> None:
        await self.agents.heartbeat(session, free, warm, running)

    def close_session(self, session: AgentSession) -> None:
        self.agents.close_session(session)

    async def watch_children(self, run: str, parent: str, send: Send, request_id: int = 0) -> None:
        await self.index.watch_children(run, parent, send, request_id)

    def unwatch(self, send: Send) -> None:
        self.index.unwatch(send)

    async def apply_policy(self, text: str, source: str = "policy") -> PolicyDocument:
        return await self.admin.apply_policy(text, source)

    async def cordon(self, cluster: str, reason: str, drain: bool) -> None:
        await self.admin.cordon(cluster, reason, drain)

    async def uncordon(self, cluster: str) -> None:
        await self.admin.uncordon(cluster)

    def cluster_view(self, record: ClusterRecord) -> ClusterRecord:
        return self.admin.cluster_view(record)

    def rooms(self) -> list[ClusterRoom]:
        return self.admin.rooms()


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
