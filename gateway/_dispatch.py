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
import dataclasses
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
    AttemptKey,
    CloseCode,
    ClusterRecord,
    CordonRecord,
    ErrorInfo,
    GatewayReply,
    Phase,
    PolicyDocument,
)
from gateway._auth import AttemptRef, WorkerTokens
from gateway._errors import ApiError
from gateway._judging import UNJUDGEABLE, cannot_judge, readable_action
from gateway._metrics import ClusterRoom
from gateway._pending import Pending, default_request, demand_of, record_put, with_default_request
from gateway._reservations import Attempt, Reservations
from gateway._runs import ACTIONS, Runs, decode_action
from gateway._waits import ancestors_bound, queue_limit, waited_too_long
from gateway.store import Compare, Delete, EventType, Put, Store, StoreError
from policies import (
    DEFAULT_POLICY,
    ClusterSnapshot,
    Decision,
    Policy,
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
    """The cluster's live free room, kept by `Reservations`: what placed attempts hold is taken at once and given
    back when they end, not at the next heartbeat."""
    warm: dict[str, int] = field(default_factory=dict)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    projects: set[str] = field(default_factory=set)
    """The projects of the work this session was given: what its agent may read (bundles, task specs)."""
    runs: set[str] = field(default_factory=set)
    """The runs this session was given work in: whose spans its agent may send."""
    spans: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Spans its agent sent per run, against `SPAN_LIMIT`."""
    log_attempts: set[tuple[str, str, int]] = field(default_factory=set)
    """Attempts whose logs this session may send, once checked (logs come in batches, several a second)."""

    @property
    def name(self) -> str:
        return self.record.name


Send = Callable[[GatewayReply], Awaitable[None]]


class Dispatcher:
    def __init__(self, store: Store, runs: Runs, workers: WorkerTokens | None = None):
        self.store = store
        self.runs = runs
        self.workers = workers or WorkerTokens(store)
        self.sessions: dict[str, AgentSession] = {}
        self._queue: dict[tuple[str, str], ActionSummary] = {}
        self._inflight: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._watchers: dict[tuple[str, str], set[Send]] = defaultdict(set)
        self._scopes: dict[str, tuple[str, str, float | None]] = {}
        """Each run's project, domain and max wait."""
        self._parents: dict[tuple[str, str], str] = {}
        """The parent of each action that has not ended (for what its ancestors hold)."""
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
        self.reservations = Reservations()
        """What placed and running attempts hold: free room per cluster, usage per project (quotas, fair share)."""
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
        await self._reserve_inflight([decode_action(kv) for kv in kvs])
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
                        action = readable_action(event.key, event.value, event.mod_revision)
                        if action is None:
                            continue
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
            action = readable_action(kv.key, kv.value, kv.mod_revision)
            if action is None:
                continue
            self._observe(action)
            if action.parent is not None and (action.run, action.parent) in self._watchers:
                children[(action.run, action.parent)].append(action)
        self.revision = revision
        for key, actions in children.items():
            await self._notify(key, actions)
        return revision + 1

    def _observe(self, action: ActionSummary) -> None:
        key = (action.run, action.name)
        if action.parent is not None and not action.phase.is_terminal:
            self._parents[key] = action.parent
        else:
            self._parents.pop(key, None)
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
        if self.reservations.observe(action.run, action.name, action.phase, action.attempts, action.cluster):
            self._rescan()
        if action.cluster is not None and action.phase in (Phase.PLACED, Phase.RUNNING):
            self._inflight[action.cluster].add(key)
        elif action.cluster is not None:
            self._inflight[action.cluster].discard(key)
            if action.phase is Phase.ABORTED:
                session = self.sessions.get(action.cluster)
                if session is not None:
                    message = AbortMessage(keys=[str(AttemptKey(action.run, action.name, action.attempts))])
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
        pending: list[tuple[tuple[str, str], Pending]] = []
        notes: list[Awaitable[object]] = []
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
            try:
                pending.append((key, await self._pending(action, now)))
            except UNJUDGEABLE as unjudgeable:
                if not cannot_judge(unjudgeable):
                    raise
                notes.append(self._unjudgeable(key, action, unjudgeable))
        if len({p.demand.project for _, p in pending}) > 1:
            usage = {project: used["cpu"] for project, used in self.reservations.usage.items()}
            by_key = dict(pending)
            pending = [
                (k, by_key[k]) for k in fair_share_order([(k, p.demand) for k, p in pending], usage, self.policy)
            ]
        snapshots = self._snapshots()
        # Each decision records the snapshots it saw; only the chosen cluster's changes between decisions.
        seen = [json.dumps(snapshot_to_dict(c)) for c in snapshots] if len(snapshots) <= SNAPSHOTS_RECORDED else []
        position = {c.name: i for i, c in enumerate(snapshots)}
        decided: list[tuple[Assignment, Put]] = []
        for key, item in pending:
            # One action the pass cannot judge fails alone; every other is still placed.
            assignment: Assignment | None = None
            try:
                decision = place(item.demand, snapshots, self.policy, usage=self.reservations.usage)
                if decision.cluster is not None:
                    assignment = await self._assign(item, decision.cluster)
            except UNJUDGEABLE as unjudgeable:
                if not cannot_judge(unjudgeable):
                    raise
                notes.append(self._unjudgeable(key, item.action, unjudgeable))
                continue
            waiting = decision.cluster is None and not decision.never_fits
            waited_out = False
            if waiting:
                decision = self._explain_wait(item, decision, snapshots)
                if item.max_wait is not None:
                    waited_out = item.demand.waited_seconds >= item.max_wait[0]
                    due = item.max_wait[0] - item.demand.waited_seconds
                    next_due = due if next_due is None else min(next_due, due)
            if waiting and not waited_out and self._noted.get(key) == decision.reason:
                continue  # still waiting, for the reason already recorded
            record = record_put(item, seen, decision, now)
            if decision.cluster is not None:
                assert assignment is not None
                decided.append((assignment, record))
                self.runs.tracing.placed(item.action, decision.cluster, decision.scores, tier=decision.tier)
                self._queue.pop(key, None)
                if seen:
                    i = position[decision.cluster]
                    seen[i] = json.dumps(snapshot_to_dict(snapshots[i]))
            elif decision.never_fits:
                detail = "; ".join(f"{k}: {v}" for k, v in decision.verdicts.items())
                message = f"{decision.reason} ({detail})" if detail else decision.reason
                # No retry could ever fit it either: the user's to fix (smaller resources), failed at once.
                error = ErrorInfo(error_type="NonRecoverableError", code="NeverFits", kind="user", message=message)
                notes.append(self._fail_queued(item.action, error, record))
            elif waited_out:
                assert item.max_wait is not None
                error = waited_too_long(item.demand.waited_seconds, *item.max_wait, decision.reason)
                notes.append(self._fail_queued(item.action, error, record))
            else:
                self._noted[key] = decision.reason
                action = item.action
                notes.append(
                    self.runs.note_waiting(action.run, action.name, action.attempts, decision.reason, [record])
                )
        placed = await asyncio.gather(*(self._commit(a, r) for a, r in decided), *notes)
        assigned: dict[str, list[Assignment]] = defaultdict(list)
        for result in placed[: len(decided)]:
            if isinstance(result, Assignment):
                assigned[result.cluster].append(result)
        for cluster, assignments in assigned.items():
            session = self.sessions.get(cluster)
            if session is not None:
                message = AssignMessage(assignments=assignments).model_dump_json()
                session.outbox.put_nowait(message)
                if (again := failpoints.duplicate_assign_after()) is not None:
                    asyncio.get_running_loop().call_later(again, session.outbox.put_nowait, message)
        return next_due

    async def _reserve_inflight(self, actions: list[ActionSummary]) -> None:
        """After a restart: what placed and running actions hold is held again, so it comes back when they end."""
        now = time.time()
        for action in actions:
            if action.cluster is None or action.phase not in (Phase.PLACED, Phase.RUNNING):
                continue
            try:
                demand = (await self._pending(action, now)).demand
            except ApiError as error:
                log.warning("cannot account for %s/%s: %s", action.run, action.name, error.message)
                continue
            self.reservations.reserve((action.run, action.name, action.attempts), action.cluster, demand)

    async def _run_scope(self, run: str) -> tuple[str, str, float | None]:
        scope = self._scopes.get(run)
        if scope is None:
            record = await self.runs.get_run(run)
            scope = self._scopes[run] = (record.project, record.domain, record.max_wait_seconds)
        return scope

    async def _pending(self, action: ActionSummary, now: float) -> Pending:
        """What placing `action` needs: its demand (from the task spec, its overrides and where its parent runs)."""
        project, domain, max_wait = await self._run_scope(action.run)
        task = await self.runs.registry.get(project, domain, action.task, action.version)
        spec = task.spec
        o = action.overrides
        resources = o.resources if o and o.resources is not None else spec.resources
        placement = o.placement if o and o.placement is not None else spec.placement
        reusable = None if o and o.reusable_off else (o.reusable if o and o.reusable is not None else spec.reusable)
        timeout = o.timeout_seconds if o and o.timeout_seconds is not None else spec.timeout_seconds
        queued_limit = o.max_queued_seconds if o and o.max_queued_seconds is not None else spec.max_queued_seconds
        limit = queue_limit(max_wait, queued_limit)
        prefer_warm = placement.prefer_warm if placement else True
        queued_since = action.not_before or action.created_at or now
        demand = demand_of(
            resources,
            placement,
            warm_key=f"{task.env}@{task.version}" if reusable and prefer_warm else None,
            queue=spec.queue if spec.queue in self.policy.queues else None,
            project=project,
            parent_cluster=self._where.get((action.run, action.parent)) if action.parent else None,
            waited_seconds=max(0.0, now - queued_since),
            spread_key=f"{action.run}/{action.parent}" if placement and placement.spread else None,
        )
        if reusable is None:
            # A one-off action starts a process of its own: asking for nothing must not mean it fits forever.
            demand = with_default_request(demand, self._default_request)
        return Pending(action, demand, task, project, domain, resources, reusable, timeout, limit)

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
                    placed_counts=self.reservations.placed_counts(name),
                )
            )
        return out

    async def _assign(self, item: Pending, cluster: str) -> Assignment:
        """Reserve room on `cluster` for the action and make its assignment."""
        session = self.sessions[cluster]
        action = item.action
        attempt = action.attempts + 1
        # Made before anything is reserved: an assignment that cannot be made holds no room.
        assignment = Assignment(
            run=action.run,
            action=action.name,
            parent=action.parent,
            attempt=attempt,
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
            token=await self.workers.mint(AttemptRef(item.project, action.run, action.name, attempt)),
            traceparent=action.traceparent,
            source_root=item.task.spec.source_root,
        )
        self.reservations.reserve((action.run, action.name, attempt), cluster, item.demand)
        session.projects.add(item.project)
        session.runs.add(action.run)
        return assignment

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
            if self.reservations.release((assignment.run, assignment.action, assignment.attempt)) is not None:
                self._rescan()
            return None
        return assignment

    def _rescan(self) -> None:
        """Capacity changed: the next pass looks at the whole queue again, oldest first."""
        self._full_pass = True
        self._wake.set()

    def _explain_wait(self, item: Pending, decision: Decision, snapshots: list[ClusterSnapshot]) -> Decision:
        """A waiting decision, its reason saying so when the action's own ancestors hold the room it needs."""
        action = item.action
        held: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        ancestor, seen = action.parent, 0
        while ancestor is not None and seen < 1000:  # a bound, not a depth anyone reaches: a cycle must not hang
            for hold in self.reservations.held_by(action.run, ancestor):
                held[hold.cluster]["cpu"] += hold.demand.cpu
                held[hold.cluster]["memory"] += float(hold.demand.memory)
            ancestor, seen = self._parents.get((action.run, ancestor)), seen + 1
        if not held:
            return decision
        reason = ancestors_bound(item.demand, decision, snapshots, held)
        return decision if reason is None else dataclasses.replace(decision, reason=reason)

    async def _fail_queued(self, action: ActionSummary, error: ErrorInfo, record: Put) -> None:
        """End a queued action that will not be placed (it never fits, or it waited longer than its run allows)."""
        with contextlib.suppress(ApiError):
            await self.runs.report(
                action.run,
                action.name,
                ActionEvent(phase=Phase.FAILED, attempt=max(action.attempts, 1), error=error),
                [record],
            )

    async def _unjudgeable(self, key: tuple[str, str], action: ActionSummary, error: Exception) -> None:
        """Fail an action placement cannot judge (a spec or override it cannot read), so it stalls nobody else."""
        self._queue.pop(key, None)
        reason = error.message if isinstance(error, ApiError) else f"{type(error).__name__}: {error}"
        log.warning("failing %s/%s: placement cannot judge it: %s", action.run, action.name, reason)
        message = f"placement cannot judge this action: {reason}"[:65_536]
        error_info = ErrorInfo(
            error_type="NonRecoverableError", code="NonRecoverableError", kind="user", message=message
        )
        with contextlib.suppress(ApiError):
            await self.runs.report(
                action.run,
                action.name,
                ActionEvent(phase=Phase.FAILED, attempt=max(action.attempts, 1), error=error_info),
            )

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
                        message = AbortMessage(keys=[str(AttemptKey(run, name, current.attempts))])
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

    def rooms(self) -> list[ClusterRoom]:
        """Every known cluster's reserved and free room (the `/metrics` gauges)."""
        names = sorted({*self.known, *self.sessions, *self.reservations.clusters()})
        return [
            ClusterRoom(
                cluster=name,
                reserved=self.reservations.reserved(name),
                free=dict(self.sessions[name].free) if name in self.sessions else None,
                attempts=self.reservations.holding(name),
            )
            for name in names
        ]

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
        free = self.reservations.rebase(record.name, dict(record.free), {_attempt(key) for key in running})
        session = AgentSession(record=record, epoch=epoch, lease=lease.id, ws=ws, free=free)
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
                key = str(AttemptKey(run, name, current.attempts))
                if current.cluster != session.name or current.phase not in (Phase.PLACED, Phase.RUNNING):
                    continue
                if key in running:
                    kept.add(key)
                    session.projects.add((await self._run_scope(run))[0])
                    session.runs.add(run)
                elif current.epoch < session.epoch:
                    await self._lose(current, session.name, "its agent restarted without it")
        orphans = sorted(running - kept)
        if orphans:
            log.info("%s runs %d attempts that are no longer its own; aborting them", session.name, len(orphans))
            session.outbox.put_nowait(AbortMessage(keys=orphans).model_dump_json())

    async def heartbeat(
        self, session: AgentSession, free: dict[str, float], warm: dict[str, int], running: int = 0
    ) -> None:
        await self.store.keepalive(session.lease)
        # Free capacity is the gateway's own account (the agent's report less what is placed there since): the
        # agent's lags the assignments on their way to it. An idle agent's report is the truth to start from again,
        # which also ends any under-count left by orphans it ran when its session opened.
        if running == 0:
            self.reservations.rebase(session.name, free, set())
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


def _attempt(key: str) -> Attempt:
    """An agent's attempt key (run/action/attempt) as a reservation's key; a malformed one matches nothing."""
    try:
        return AttemptKey.parse(key)
    except ValueError:
        return (key, "", -1)


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
