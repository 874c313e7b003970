"""The dispatcher: the parts that move actions from the queue onto clusters, put together.

    store watch /flyte/actions/ ──► ActionIndex ──► Placer (queue, passes) ──► assignments to agents
                               │                └─► aborted on a cluster ──► abort message to its agent
                               └─► children of a watched parent ──► the workers waiting on them
    store watch /flyte/sessions/ ─► AgentSessions ──► a lease ended ──► its work fails as `ClusterLost` and is retried
    operators ──► ClusterAdmin (policy, cordons) ──► the placer looks at the whole queue again

Each part is a module of its own (`_action_index`, `_placer`, `_sessions`, `_cluster_admin`) and takes what it uses;
this one builds them, starts their loops, and keeps the surface the connection handlers and the API use.

The store is the truth: everything here is rebuilt from a range and a watch after a restart, which is also what
lets several gateway replicas share one store later (one of them elected to run the placement loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence

from aiohttp import web

from flyte._clock import SYSTEM_CLOCK, Clock
from flyte._wire import ActionSummary, AttemptKey, ClusterRecord, Phase, PolicyDocument
from gateway._action_index import ActionIndex, Send
from gateway._auth import WorkerTokens
from gateway._cluster_admin import ClusterAdmin
from gateway._metrics import ClusterRoom
from gateway._placer import Placer, RunScopes
from gateway._reservations import Reservations
from gateway._runs import Runs
from gateway._sessions import HEARTBEAT_INTERVAL, LEASE_TTL, AgentSession, AgentSessions
from gateway.store import Store

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
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        """Why a loop stopped on a bug (the gateway then places nothing and reports itself unhealthy)."""

    def _observed(self, action: ActionSummary) -> None:
        self.placer.observe(action)
        if action.cluster is not None and action.phase is Phase.ABORTED:
            self.agents.abort(action.cluster, [str(AttemptKey(action.run, action.name, action.attempts))])

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.agents.load()
        await self.admin.load()
        actions = await self.index.load()
        await self.placer.reserve_inflight(actions)
        live = await self.agents.live()
        start = self.index.revision + 1
        self._tasks = [
            self._supervised(self.index.watch(start), "watch-actions"),
            self._supervised(self.agents.watch(start), "watch-sessions"),
            self._supervised(self.placer.run(), "placement"),
        ]
        await self.agents.fail_over_vanished(live)

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
