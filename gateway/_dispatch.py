"""The dispatcher: one watch over every action feeds the queue, the placement loop, workers waiting on children,
and aborts to agents; agent sessions hold leases, and a lost lease moves its work elsewhere.

    store watch /flyte/actions/ ──► queued? ──► queue ──► place() ──► CAS queued->placed ──► assign to agent
                               └─► children of a watched parent ──► the workers waiting on them
                               └─► aborted on a cluster ──► abort message to its agent
    store watch /flyte/sessions/ ─► a session key expired ──► that session's placed/running actions fail as
                                    system errors, which the retry policy requeues as the next attempt

The store is the truth: everything here is rebuilt from a range and a watch after a restart, which is also what
lets several gateway replicas share one store later (one of them elected to run the placement loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from flyte import _failpoints as failpoints
from flyte._retrying import RetryDelay
from flyte._wire import (
    DEFAULT_REQUEST,
    AbortMessage,
    ActionEvent,
    ActionSummary,
    Assignment,
    AssignMessage,
    CloseCode,
    ClusterRecord,
    CordonRecord,
    ErrorInfo,
    GatewayReply,
    Phase,
    PolicyDocument,
    TaskVersion,
)
from gateway._auth import create_token
from gateway._errors import ApiError
from gateway._runs import ACTIONS, Runs, decode_action, decode_event
from gateway.store import Compare, Delete, EventType, Put, Store, StoreError
from policies import (
    DEFAULT_POLICY,
    ClusterSnapshot,
    Decision,
    Demand,
    Policy,
    demand_to_dict,
    fair_share_order,
    parse_policy,
    place,
    snapshot_to_dict,
)

log = logging.getLogger("flyte.gateway.dispatch")

SESSIONS = "/flyte/sessions/"
EPOCH_KEY = "/flyte/epoch"
CLUSTERS = "/flyte/clusters/"
POLICY_KEY = "/flyte/policy"
CORDONS = "/flyte/cordons/"
PLACEMENTS = "/flyte/placements/"
SNAPSHOTS_RECORDED = 64
"""A decision records every cluster's snapshot up to this many clusters (for `flyte policy simulate`); past it only
the verdicts and scores, so a record stays a few KiB."""
LEASE_TTL = float(os.environ.get("FLYTE_LEASE_TTL", "10"))
"""Seconds an agent may go silent before its work is moved to another cluster (tests shorten it)."""
HEARTBEAT_INTERVAL = 1.0


@dataclass
class AgentSession:
    """A connected agent: where to send assignments, and what it has room for."""

    record: ClusterRecord
    epoch: int
    lease: int
    ws: web.WebSocketResponse
    free: dict[str, float]
    warm: dict[str, int] = field(default_factory=dict)
    reserved: dict[tuple[str, str], Demand] = field(default_factory=dict)
    """What placed actions hold until they end: returned at once, not at the next heartbeat."""
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    placed_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """In-flight actions here per spread key (siblings of a `Placement(spread=True)` parent)."""

    @property
    def name(self) -> str:
        return self.record.name


Send = Callable[[GatewayReply], Awaitable[None]]


class Dispatcher:
    def __init__(self, store: Store, runs: Runs):
        self.store = store
        self.runs = runs
        self.sessions: dict[str, AgentSession] = {}
        self._queue: dict[tuple[str, str], ActionSummary] = {}
        self._inflight: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._watchers: dict[tuple[str, str], set[Send]] = defaultdict(set)
        self._run_tokens: dict[str, str] = {}
        self._scopes: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._fresh: list[tuple[str, str]] = []
        """Actions queued since the last pass: all a pass looks at unless capacity changed."""
        self._full_pass = True
        self._tasks: list[asyncio.Task[None]] = []
        self.revision = 0
        self.policy: Policy = DEFAULT_POLICY
        self.policy_document = PolicyDocument(text="version: default\n", version="default")
        self.cordons: dict[str, CordonRecord] = {}
        self.known: dict[str, ClusterRecord] = {}
        """Every registered cluster, connected or not: a demand that fits one that is down waits rather than fails."""
        self._where: dict[tuple[str, str], str] = {}
        """The cluster of each placed or running action (for the locality of its children)."""
        self._usage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        """What each project's placed and running actions hold (cpu, memory, gpu), for quotas and fair share."""
        self._noted: dict[tuple[str, str], str] = {}
        """The waiting reason last recorded for each queued action: recorded again only when it changes."""
        self._default_request: Mapping[str, float] = DEFAULT_REQUEST
        """What a one-off action counts as holding where it declares nothing: see `default_request`."""

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        clusters, _ = await self.store.range(CLUSTERS)
        self.known = {kv.key.removeprefix(CLUSTERS): ClusterRecord.model_validate_json(kv.value) for kv in clusters}
        self._default_request = default_request(self.known.values())
        cordons, _ = await self.store.range(CORDONS)
        self.cordons = {kv.key.removeprefix(CORDONS): CordonRecord.model_validate_json(kv.value) for kv in cordons}
        stored = await self.store.get(POLICY_KEY)
        if stored is not None:
            document = PolicyDocument.model_validate_json(stored.value)
            self.policy, self.policy_document = parse_policy(document.text), document
        kvs, revision = await self.store.range(ACTIONS)
        for kv in kvs:
            self._observe(decode_action(kv))
        sessions, _ = await self.store.range(SESSIONS)
        live = {kv.key.removeprefix(SESSIONS) for kv in sessions}
        self.revision = revision
        self._tasks = [
            asyncio.create_task(self._watch_actions(revision + 1), name="watch-actions"),
            asyncio.create_task(self._watch_sessions(revision + 1), name="watch-sessions"),
            asyncio.create_task(self._place_loop(), name="placement"),
        ]
        # Work placed on clusters whose sessions vanished while no gateway was watching moves now.
        for cluster in list(self._inflight):
            if cluster not in live:
                await self._fail_over(cluster, "its agent's session ended while the gateway was down")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- observing actions ----------------------------------------------------------------------------------

    async def _watch_actions(self, start: int) -> None:
        while True:
            try:
                async for batch in self.store.watch(ACTIONS, start):
                    changed: dict[tuple[str, str], list[ActionSummary]] = defaultdict(list)
                    for event in batch:
                        if event.type is not EventType.PUT:
                            continue
                        action = decode_event(event)
                        self._observe(action)
                        if action.parent is not None:
                            changed[(action.run, action.parent)].append(action)
                    start = batch[-1].mod_revision + 1
                    self.revision = batch[-1].mod_revision
                    for key, actions in changed.items():
                        await self._notify(key, actions)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The store went away, or the watch fell behind a compaction: what changed meanwhile is only
                # in a fresh range, so re-list once the store answers again.
                log.warning("the action watch failed (%s: %s); re-listing", type(error).__name__, error)
                start = await self._relist_actions()

    async def _relist_actions(self) -> int:
        """Rebuild the queue and the in-flight index from a range, and tell watching workers where their children
        are now (a change missed by the watch would leave a parent waiting); returns the revision to watch from."""
        retry = RetryDelay(0.5, 5.0)
        while True:
            await retry.sleep()
            try:
                kvs, revision = await self.store.range(ACTIONS)
                break
            except StoreError as error:
                log.warning("re-listing actions failed (%s); retrying within %.1fs", error, retry.ceiling)
        children: dict[tuple[str, str], list[ActionSummary]] = defaultdict(list)
        for kv in kvs:
            action = decode_action(kv)
            self._observe(action)
            if action.parent is not None and (action.run, action.parent) in self._watchers:
                children[(action.run, action.parent)].append(action)
        self.revision = revision
        for key, actions in children.items():
            await self._notify(key, actions)
        return revision + 1

    def _observe(self, action: ActionSummary) -> None:
        key = (action.run, action.name)
        if action.phase is Phase.QUEUED:
            self._queue[key] = action
            self._fresh.append(key)
            self._wake.set()
        else:
            self._queue.pop(key, None)
            self._noted.pop(key, None)
        if action.cluster is not None and action.phase in (Phase.PLACED, Phase.RUNNING):
            self._where[key] = action.cluster
        else:
            self._where.pop(key, None)
        for cluster, keys in self._inflight.items():
            if cluster != action.cluster:
                keys.discard(key)
        if action.cluster is not None and action.phase in (Phase.PLACED, Phase.RUNNING):
            self._inflight[action.cluster].add(key)
        elif action.cluster is not None:
            self._inflight[action.cluster].discard(key)
            self._release(action.cluster, key)
            if action.phase is Phase.ABORTED:
                session = self.sessions.get(action.cluster)
                if session is not None:
                    message = AbortMessage(keys=[f"{action.run}/{action.name}/{action.attempts}"])
                    session.outbox.put_nowait(message.model_dump_json())

    async def _notify(self, key: tuple[str, str], actions: list[ActionSummary]) -> None:
        for send in list(self._watchers.get(key, ())):
            with contextlib.suppress(Exception):
                await send(GatewayReply(type="children", parent=key[1], actions=actions))

    async def watch_children(self, run: str, parent: str, send: Send, request_id: int = 0) -> None:
        """Send the children `parent` has now, then every change to them (until `unwatch`)."""
        self._watchers[(run, parent)].add(send)
        children, _ = await self.runs.list_actions(run, parent)
        await send(GatewayReply(type="children", id=request_id, parent=parent, actions=children))

    def unwatch(self, send: Send) -> None:
        for key, sends in list(self._watchers.items()):
            sends.discard(send)
            if not sends:
                del self._watchers[key]

    # -- placement ----------------------------------------------------------------------------------------------

    async def _place_loop(self) -> None:
        while True:
            timeout = None
            try:
                timeout = await self._place_some()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("placement pass failed")
                timeout = 0.5
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._full_pass = True  # a backoff ended: look at the actions that were waiting for it

    async def _place_some(self) -> float | None:
        """One pass over the queue in fair-share order; returns when to look again for actions still backing off.

        Decisions are made one by one (each reserves capacity before the next is made); the placed transitions,
        each with its decision record, are then written concurrently, so group commit puts many of them in one
        store transaction.
        """
        now = time.time()
        next_due: float | None = None
        keys = list(self._queue) if self._full_pass else [k for k in self._fresh if k in self._queue]
        self._fresh, self._full_pass = [], False
        if not self.sessions:
            # Nowhere to place anything; a session opening rescans the queue.
            return None
        pending: list[tuple[tuple[str, str], _Pending]] = []
        for examined, key in enumerate(keys):
            action = self._queue.get(key)
            if action is None:
                continue
            if examined % 256 == 255:
                await asyncio.sleep(0)  # a long queue must not hold the loop that serves the API
            if action.not_before is not None and action.not_before > now:
                due = action.not_before - now
                next_due = due if next_due is None else min(next_due, due)
                continue
            pending.append((key, await self._pending(action, now)))
        if len({p.demand.project for _, p in pending}) > 1:
            usage = {project: used["cpu"] for project, used in self._usage.items()}
            by_key = dict(pending)
            pending = [
                (k, by_key[k]) for k in fair_share_order([(k, p.demand) for k, p in pending], usage, self.policy)
            ]
        snapshots = self._snapshots()
        # Each decision records the snapshots it saw; only the chosen cluster's changes between decisions.
        seen = [json.dumps(snapshot_to_dict(c)) for c in snapshots] if len(snapshots) <= SNAPSHOTS_RECORDED else []
        position = {c.name: i for i, c in enumerate(snapshots)}
        decided: list[tuple[Assignment, Put]] = []
        notes: list[Awaitable[object]] = []
        for key, item in pending:
            decision = place(item.demand, snapshots, self.policy, usage=self._usage)
            waiting = decision.cluster is None and not decision.never_fits
            if waiting and self._noted.get(key) == decision.reason:
                continue  # still waiting, for the reason already recorded
            record = _record_put(item, seen, decision, now)
            if decision.cluster is not None:
                decided.append((await self._assign(item, decision.cluster), record))
                self.runs.tracing.placed(item.action, decision.cluster, decision.scores, tier=decision.tier)
                self._queue.pop(key, None)
                if seen:
                    i = position[decision.cluster]
                    seen[i] = json.dumps(snapshot_to_dict(snapshots[i]))
            elif decision.never_fits:
                notes.append(self._never_fits(item.action, decision, record))
            else:
                self._noted[key] = decision.reason
                action = item.action
                notes.append(
                    self.runs.note_waiting(action.run, action.name, action.attempts, decision.reason, [record])
                )
        placed = await asyncio.gather(*(self._commit(a, r) for a, r in decided), *notes)
        assigned: dict[str, list[Assignment]] = defaultdict(list)
        for assignment in placed[: len(decided)]:
            if isinstance(assignment, Assignment):
                assigned[assignment.cluster].append(assignment)
        for cluster, assignments in assigned.items():
            session = self.sessions.get(cluster)
            if session is not None:
                message = AssignMessage(assignments=assignments).model_dump_json()
                session.outbox.put_nowait(message)
                if (again := failpoints.duplicate_assign_after()) is not None:
                    asyncio.get_running_loop().call_later(again, session.outbox.put_nowait, message)
        return next_due

    async def _run_scope(self, run: str) -> tuple[str, str]:
        scope = self._scopes.get(run)
        if scope is None:
            record = await self.runs.get_run(run)
            scope = self._scopes[run] = (record.project, record.domain)
        return scope

    async def _pending(self, action: ActionSummary, now: float) -> _Pending:
        """What placing `action` needs: its demand (from the task spec, its overrides and where its parent runs)."""
        project, domain = await self._run_scope(action.run)
        task = await self.runs.registry.get(project, domain, action.task, action.version)
        spec = task.spec
        o = action.overrides
        resources = o.resources if o and o.resources is not None else spec.resources
        placement = o.placement if o and o.placement is not None else spec.placement
        reusable = None if o and o.reusable_off else (o.reusable if o and o.reusable is not None else spec.reusable)
        timeout = o.timeout_seconds if o and o.timeout_seconds is not None else spec.timeout_seconds
        prefer_warm = (placement or {}).get("prefer_warm", True)
        queued_since = action.not_before or action.created_at or now
        demand = _demand(
            resources,
            placement,
            warm_key=f"{task.env}@{task.version}" if reusable and prefer_warm else None,
            queue=spec.queue if spec.queue in self.policy.queues else None,
            project=project,
            parent_cluster=self._where.get((action.run, action.parent)) if action.parent else None,
            waited_seconds=max(0.0, now - queued_since),
            spread_key=f"{action.run}/{action.parent}" if (placement or {}).get("spread") else None,
        )
        if reusable is None:
            # A one-off action starts a process of its own: asking for nothing must not mean it fits forever.
            demand = with_default_request(demand, self._default_request)
        return _Pending(action, demand, task, project, domain, resources, reusable, timeout)

    def _snapshots(self) -> list[ClusterSnapshot]:
        """Every registered cluster as placement sees it: connected ones live, the others as unhealthy."""
        out = []
        for name, record in sorted(self.known.items()):
            session = self.sessions.get(name)
            if session is not None:
                record = session.record
            out.append(
                ClusterSnapshot(
                    name=name,
                    region=record.region,
                    cloud=record.cloud,
                    capacity=record.capacity,
                    free=session.free if session is not None else {},
                    warm=session.warm if session is not None else {},
                    healthy=session is not None,
                    cordoned=name in self.cordons,
                    labels=record.labels,
                    cost_per_cpu_hour=record.cost_per_cpu_hour,
                    cost_per_gpu_hour=record.cost_per_gpu_hour,
                    placed_counts=session.placed_counts if session is not None else {},
                )
            )
        return out

    async def _assign(self, item: _Pending, cluster: str) -> Assignment:
        """Reserve room on `cluster` for the action and make its assignment."""
        session = self.sessions[cluster]
        demand, action = item.demand, item.action
        for resource, amount in (("cpu", demand.cpu), ("memory", float(demand.memory))):
            session.free[resource] = session.free.get(resource, 0.0) - amount
        self._hold(session, demand, +1)
        session.reserved[(action.run, action.name)] = demand
        return Assignment(
            run=action.run,
            action=action.name,
            parent=action.parent,
            attempt=action.attempts + 1,
            epoch=session.epoch,
            cluster=session.name,
            project=item.project,
            domain=item.domain,
            task=action.task,
            version=item.task.version,
            bundle_digest=item.task.bundle_digest,
            inputs=action.inputs,
            custom_context=action.custom_context,
            resources=item.resources,
            timeout_seconds=item.timeout,
            reusable=item.reusable,
            env_vars=(action.overrides.env_vars or {}) if action.overrides else {},
            token=await self._run_token(action.run, item.project),
            traceparent=action.traceparent,
            source_root=item.task.spec.source_root,
        )

    def _hold(self, session: AgentSession, demand: Demand, sign: int) -> None:
        """Count a placed action against its project's usage and its spread key (sign -1 gives it back)."""
        used = self._usage[demand.project]
        used["cpu"] += sign * demand.cpu
        used["memory"] += sign * float(demand.memory)
        used["gpu"] += sign * float(demand.gpu)
        if demand.spread_key is not None:
            session.placed_counts[demand.spread_key] += sign
            if session.placed_counts[demand.spread_key] <= 0:
                del session.placed_counts[demand.spread_key]

    async def _commit(self, assignment: Assignment, record: Put) -> Assignment | None:
        """Record the placement (queued -> placed) with its decision; a lost race (aborted, placed elsewhere) gives
        the room back."""
        event = ActionEvent(
            phase=Phase.PLACED, attempt=assignment.attempt, cluster=assignment.cluster, epoch=assignment.epoch
        )
        try:
            await self.runs.report(assignment.run, assignment.action, event, [record])
        except ApiError as error:
            log.info("placing %s/%s lost a race: %s", assignment.run, assignment.action, error.message)
            self._release(assignment.cluster, (assignment.run, assignment.action))
            return None
        return assignment

    def _rescan(self) -> None:
        """Capacity changed: the next pass looks at the whole queue again, oldest first."""
        self._full_pass = True
        self._wake.set()

    def _release(self, cluster: str, key: tuple[str, str]) -> None:
        session = self.sessions.get(cluster)
        demand = session.reserved.pop(key, None) if session is not None else None
        if session is None or demand is None:
            return
        for resource, amount in (("cpu", demand.cpu), ("memory", float(demand.memory))):
            session.free[resource] = session.free.get(resource, 0.0) + amount
        self._hold(session, demand, -1)
        self._rescan()

    async def _never_fits(self, action: ActionSummary, decision: Decision, record: Put) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in decision.verdicts.items())
        message = f"{decision.reason} ({detail})" if detail else decision.reason
        error = ErrorInfo(error_type="RuntimeUserError", code="NeverFits", kind="user", message=message)
        with contextlib.suppress(ApiError):
            await self.runs.report(
                action.run,
                action.name,
                ActionEvent(phase=Phase.FAILED, attempt=max(action.attempts, 1), error=error),
                [record],
            )

    async def _run_token(self, run: str, project: str) -> str:
        token = self._run_tokens.get(run)
        if token is None:
            token = await create_token(self.store, [f"worker:{run}"], [project], f"workers of run {run}")
            self._run_tokens[run] = token
        return token

    # -- policy, cordons, cluster views ---------------------------------------------------------------------------

    async def apply_policy(self, text: str, source: str = "policy") -> PolicyDocument:
        """Validate and store a policy document; the next placement pass uses it. ValueError names line and field."""
        policy = parse_policy(text, source)
        document = PolicyDocument(text=text, version=policy.version, applied_at=time.time())
        await self.store.put(POLICY_KEY, document.model_dump_json().encode())
        self.policy, self.policy_document = policy, document
        self._noted.clear()
        self._rescan()
        log.info("placement policy %s applied", policy.version)
        return document

    async def cordon(self, cluster: str, reason: str, drain: bool) -> None:
        """No new work lands on `cluster`; with `drain`, its placed work that has not started moves elsewhere."""
        record = CordonRecord(reason=reason, drain=drain, at=time.time())
        await self.store.put(CORDONS + cluster, record.model_dump_json().encode())
        self.cordons[cluster] = record
        self._noted.clear()
        if drain:
            why = f"moved off {cluster}, which is draining: {reason}"
            for run, name in list(self._inflight.get(cluster, ())):
                current = await self.runs.get_action(run, name)
                if current.phase is Phase.PLACED and await self.runs.requeue_placed(run, name, cluster, why):
                    session = self.sessions.get(cluster)
                    if session is not None:
                        message = AbortMessage(keys=[f"{run}/{name}/{current.attempts}"])
                        session.outbox.put_nowait(message.model_dump_json())
        self._rescan()

    async def uncordon(self, cluster: str) -> None:
        await self.store.txn([], [Delete(CORDONS + cluster)])
        self.cordons.pop(cluster, None)
        self._noted.clear()
        self._rescan()

    def cluster_view(self, record: ClusterRecord) -> ClusterRecord:
        """A stored cluster record with what the gateway knows now: connection, free room, warm slots, cordon."""
        session = self.sessions.get(record.name)
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

    # -- agent sessions -----------------------------------------------------------------------------------------

    async def open_session(
        self, record: ClusterRecord, ws: web.WebSocketResponse, running: Sequence[str] = ()
    ) -> AgentSession:
        """Register a cluster's agent with a new epoch (fencing every older session) and a lease.

        `running` are the attempt keys (run/action/attempt) the agent says it still runs: see `_adopt`.
        """
        epoch = await self._next_epoch()
        lease = await self.store.grant_lease(LEASE_TTL)
        record = record.model_copy(update={"epoch": epoch, "last_heartbeat": time.time(), "healthy": True})
        await self.store.put(CLUSTERS + record.name, record.model_dump_json().encode())
        self.known[record.name] = record
        self._default_request = default_request(self.known.values())
        await self.store.put(SESSIONS + record.name, str(epoch).encode(), lease=lease.id)
        old = self.sessions.get(record.name)
        session = AgentSession(record=record, epoch=epoch, lease=lease.id, ws=ws, free=dict(record.free))
        self.sessions[record.name] = session
        if old is not None and old.ws is not ws:
            with contextlib.suppress(Exception):
                await old.ws.close(code=CloseCode.REPLACED, message=b"replaced by a newer session")
        await self._adopt(session, set(running))
        self._rescan()
        return session

    async def _adopt(self, session: AgentSession, running: set[str]) -> None:
        """Reconcile a new session with the work older sessions of its cluster were given.

        The session key is put again under the new lease, so the old lease expiring moves nothing: work placed
        there that the agent does not run (it crashed and restarted, or the assignment was lost with the gateway)
        moves now. Attempts the agent runs that are no longer current there (moved while it was away) are
        aborted, so it drops orphaned work instead of finishing it for nothing.
        """
        kept: set[str] = set()
        for run, name in list(self._inflight.get(session.name, ())):
            with contextlib.suppress(ApiError):
                current = await self.runs.get_action(run, name)
                key = f"{run}/{name}/{current.attempts}"
                if current.cluster != session.name or current.phase not in (Phase.PLACED, Phase.RUNNING):
                    continue
                if key in running:
                    kept.add(key)
                elif current.epoch < session.epoch:
                    await self._lose(current, session.name, "its agent restarted without it")
        orphans = sorted(running - kept)
        if orphans:
            log.info("%s runs %d attempts that are no longer its own; aborting them", session.name, len(orphans))
            session.outbox.put_nowait(AbortMessage(keys=orphans).model_dump_json())

    async def heartbeat(self, session: AgentSession, free: dict[str, float], warm: dict[str, int]) -> None:
        await self.store.keepalive(session.lease)
        # Free capacity is the gateway's own account (capacity less what it placed there): the agent's lags the
        # assignments on their way to it.
        session.warm = warm
        self._rescan()

    def close_session(self, session: AgentSession) -> None:
        """The connection closed; the lease (not the socket) decides when its work moves."""
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]

    async def _next_epoch(self) -> int:
        while True:
            kv = await self.store.get(EPOCH_KEY)
            epoch = int(kv.value) + 1 if kv is not None else 1
            result = await self.store.txn(
                [Compare(EPOCH_KEY, kv.mod_revision if kv else 0)], [Put(EPOCH_KEY, str(epoch).encode())]
            )
            if result.succeeded:
                return epoch

    async def _watch_sessions(self, start: int) -> None:
        while True:
            try:
                async for batch in self.store.watch(SESSIONS, start):
                    for event in batch:
                        start = event.mod_revision + 1
                        if event.type is EventType.DELETE:
                            await self._session_gone(event.key.removeprefix(SESSIONS))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A session that expired while the watch was down shows only as a missing key: look for those.
                log.warning("the session watch failed (%s: %s); re-listing", type(error).__name__, error)
                start = await self._relist_sessions()

    async def _relist_sessions(self) -> int:
        retry = RetryDelay(0.5, 5.0)
        while True:
            await retry.sleep()
            try:
                kvs, revision = await self.store.range(SESSIONS)
                live = {kv.key.removeprefix(SESSIONS) for kv in kvs}
                for cluster in [c for c in {*self._inflight, *self.sessions} if c not in live]:
                    await self._session_gone(cluster)
                return revision + 1
            except StoreError as error:
                log.warning("re-listing sessions failed (%s); retrying within %.1fs", error, retry.ceiling)

    async def _session_gone(self, cluster: str) -> None:
        """A cluster's session key is gone (its lease expired): unless a new session replaced it, move its work."""
        session = self.sessions.get(cluster)
        if await self.store.get(SESSIONS + cluster) is not None:
            return
        if session is not None:
            self.sessions.pop(cluster, None)
            with contextlib.suppress(Exception):
                await session.ws.close(code=CloseCode.LEASE_EXPIRED, message=b"lease expired")
        await self._fail_over(cluster, "its agent stopped heartbeating (lease expired)")

    async def _fail_over(self, cluster: str, why: str) -> None:
        """Every action placed on or running in `cluster` fails as a system error: the retry policy moves it."""
        for run, name in list(self._inflight.get(cluster, ())):
            with contextlib.suppress(ApiError):
                current = await self.runs.get_action(run, name)
                if current.cluster != cluster or current.phase not in (Phase.PLACED, Phase.RUNNING):
                    continue
                await self._lose(current, cluster, why)
        log.warning("cluster %s lost: %s", cluster, why)

    async def _lose(self, current: ActionSummary, cluster: str, why: str) -> None:
        """Fail the current attempt of an action as a system error (`ClusterLost`): the retry policy moves it."""
        error = ErrorInfo(
            error_type="RuntimeSystemError",
            code="ClusterLost",
            kind="system",
            message=f"cluster {cluster} was lost: {why}",
            worker=cluster,
        )
        run, name, attempt, epoch = current.run, current.name, current.attempts, current.epoch
        if current.phase is Phase.PLACED:
            await self.runs.report(
                run, name, ActionEvent(phase=Phase.RUNNING, attempt=attempt, cluster=cluster, epoch=epoch)
            )
        await self.runs.report(
            run, name, ActionEvent(phase=Phase.FAILED, attempt=attempt, cluster=cluster, epoch=epoch, error=error)
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """A queued action ready to be placed, with what its assignment will carry."""

    action: ActionSummary
    demand: Demand
    task: TaskVersion
    project: str
    domain: str
    resources: dict[str, Any]
    reusable: dict[str, Any] | None
    timeout: float | None


def _record_put(item: _Pending, snapshots: list[str], decision: Decision, now: float) -> Put:
    """The store write of a decision: a `PlacementRecord`, serialised directly, with the snapshots already in JSON
    (this runs once per decision, and most snapshots are the same from one decision to the next)."""
    action = item.action
    attempt = action.attempts + 1
    record = {
        "run": action.run,
        "action": action.name,
        "attempt": attempt,
        "decided_at": now,
        "policy_version": decision.policy_version,
        "cluster": decision.cluster,
        "never_fits": decision.never_fits,
        "reason": decision.reason,
        "tier": decision.tier,
        "verdicts": decision.verdicts,
        "scores": decision.scores,
        "demand": demand_to_dict(item.demand),
    }
    text = json.dumps(record)[:-1] + ',"snapshots":[' + ",".join(snapshots) + "]}"
    return Put(f"{PLACEMENTS}{action.run}/{action.name}/{attempt:06d}", text.encode())


def _demand(
    resources: dict[str, Any],
    placement: dict[str, Any] | None,
    *,
    warm_key: str | None,
    queue: str | None,
    project: str,
    parent_cluster: str | None,
    waited_seconds: float,
    spread_key: str | None,
) -> Demand:
    """What an action asks for, from its task spec (`Resources.to_dict()` and `Placement.to_dict()`)."""
    cpu = resources.get("cpu") or {}
    memory = resources.get("memory") or {}
    gpu = resources.get("gpu") or {}
    placement = placement or {}

    def names(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in placement.get(key) or ())

    return Demand(
        cpu=float(cpu.get("request") or 0.0),
        memory=int(memory.get("request") or 0),
        gpu=int(gpu.get("count") or 0),
        gpu_type=gpu.get("type"),
        warm_key=warm_key,
        clusters=names("clusters"),
        regions=names("regions"),
        clouds=names("clouds"),
        avoid=names("avoid"),
        project=project,
        labels=tuple(sorted((str(k), str(v)) for k, v in (placement.get("labels") or {}).items())),
        queue=queue,
        parent_cluster=parent_cluster,
        waited_seconds=waited_seconds,
        spread_key=spread_key,
    )


def default_request(clusters: Iterable[ClusterRecord]) -> Mapping[str, float]:
    """The default request placement applies: the largest each registered cluster advertises, so that a cluster
    chosen for an action that declares nothing is never over-committed by its own agent's account."""
    merged: dict[str, float] = dict(DEFAULT_REQUEST)
    for index, record in enumerate(clusters):
        for resource, amount in record.default_request.items():
            merged[resource] = amount if index == 0 else max(merged[resource], amount)
    return merged


def with_default_request(demand: Demand, default: Mapping[str, float]) -> Demand:
    """`demand` with the default request for each of cpu and memory it does not declare (a reusable environment's
    actions run in its pool's processes and need none)."""
    if demand.cpu > 0 and demand.memory > 0:
        return demand
    return replace(
        demand,
        cpu=demand.cpu if demand.cpu > 0 else default["cpu"],
        memory=demand.memory if demand.memory > 0 else int(default["memory"]),
    )


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
