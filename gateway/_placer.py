"""The placer: the queue of actions waiting to be placed, and the placement pass that places them.

    observed queued ──► queue ──► pass (fair-share order) ──► place() ──► reserve room, assignment
                                                                     ──► CAS queued->placed with the decision record
                                                                     ──► one sync, then assignments to each agent
    a child submitted while nothing waits (the leader) ──► place() ──► placed in the submission's own transaction
                                                                  ──► its assignment once that returns

A pass looks at the actions queued since the last one, or at the whole queue when capacity, the policy or the
cordons changed (`rescan`). A pass that fails for a reason that passes (the store is unreachable or busy) is tried
again with backoff; any other failure is a bug: it is logged with its traceback and ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping

from pydantic_core import to_json

from flyte import _failpoints as failpoints
from flyte._clock import SYSTEM_CLOCK, Clock, wait_event
from flyte._retrying import RetryDelay
from flyte._wire import (
    ActionEvent,
    ActionSummary,
    Assignment,
    AssignMessage,
    AttemptKey,
    ErrorInfo,
    Phase,
    pool_key,
)
from flyte.errors import NonRecoverableError
from gateway._action_index import TEMPORARY, Key
from gateway._auth import AttemptRef, WorkerTokens
from gateway._blob_stores import input_bytes
from gateway._cluster_admin import ClusterAdmin
from gateway._domain_errors import DomainError
from gateway._judging import UNJUDGEABLE, cannot_judge
from gateway._pending import Pending, demand_of, record_put, with_default_request
from gateway._queue import GroupKey, PlacementQueue, group_key
from gateway._reservations import Reservations
from gateway._runs import AtSubmit, ChildrenHere, PlacedAtSubmit, Runs, WaitsAtSubmit
from gateway._sessions import AgentSession, AgentSessions
from gateway._waits import ancestors_bound, queue_limit, waited_too_long
from gateway.store import Compare, Op, Put, Store
from policies import ClusterSnapshot, Decision, fair_share_order, place, snapshot_to_dict

log = logging.getLogger("flyte.gateway.dispatch")

SNAPSHOTS_RECORDED = 64
"""A decision records every cluster's snapshot up to this many clusters (for `flyte policy simulate`); past it only
the verdicts and scores, so a record stays a few KiB."""
_JUDGED_KEPT = 100_000
"""Children judged at submission whose `Pending` waits for the pass that sees them queued, at most."""


def pass_retry() -> RetryDelay:
    """The backoff of the placement loop after a pass failed for a reason that passes."""
    return RetryDelay(0.5, 5.0)


def temporary(error: Exception) -> bool:
    """Whether a failed pass is worth trying again: the store is unreachable or busy (not a bug)."""
    return isinstance(error, TEMPORARY) or (isinstance(error, DomainError) and not cannot_judge(error))


async def deliver_placed(store: Store, batches: Iterable[tuple[AgentSession, list[Assignment]]]) -> None:
    """Send each agent its attempts whose placements were written without an fsync (`Runs.report`): one sync makes
    them durable first, so a power cut never takes back an attempt an agent was given (its number is not reused)."""
    batches = list(batches)
    if not batches:
        return
    await store.sync()
    for session, assignments in batches:
        deliver(session, assignments)


def deliver(session: AgentSession, assignments: list[Assignment]) -> None:
    """Send `session`'s agent those of `assignments` made for its epoch and not sent yet: the placer (when this
    replica holds the agent) and the action watch may both try; the agent is told once. Its agent may then read the
    runs' projects and send their spans."""
    fresh = []
    for assignment in assignments:
        key = AttemptKey(assignment.run, assignment.action, assignment.attempt)
        if assignment.epoch != session.epoch or key in session.sent:
            continue
        session.sent.add(key)
        session.projects.add(assignment.project)
        session.runs.add(assignment.run)
        fresh.append(assignment)
    if not fresh:
        return
    held = [key for a in fresh if (key := AttemptKey.of(a)) in session.held] if session.held else []
    session.held.difference_update(held)
    message = AssignMessage(assignments=fresh, held=[str(key) for key in held]).model_dump_json()
    session.outbox.put_nowait(message)
    if (again := failpoints.duplicate_assign_after()) is not None:
        asyncio.get_running_loop().call_later(again, session.outbox.put_nowait, message)


class _Pass:
    """What one placement pass has decided so far."""

    def __init__(self, now: float, snapshots: list[ClusterSnapshot]):
        self.now = now
        self.next_due: float | None = None
        self.snapshots = snapshots
        # Each decision records the snapshots it saw; only the chosen cluster's changes between decisions.
        recorded = len(snapshots) <= SNAPSHOTS_RECORDED
        self.seen = [to_json(snapshot_to_dict(c)) for c in snapshots] if recorded else []
        self.position = {c.name: i for i, c in enumerate(snapshots)}
        self.decided: list[tuple[Assignment, Put, ActionSummary]] = []
        self.notes: list[Awaitable[object]] = []
        self.blocked: dict[int, Decision] = {}
        """The waiting decision of each group (by id) this pass found waiting."""
        self.kinds_waiting: dict[GroupKey, Decision] = {}
        """The same, by group key, for children judged as they are submitted (not in a group yet)."""
        self.fence: Compare | None = None
        """The leader's term this pass decides in, carried by each placement it writes."""

    def due(self, seconds: float) -> None:
        self.next_due = seconds if self.next_due is None else min(self.next_due, seconds)

    def chose(self, cluster: str) -> None:
        """A decision placed an action on `cluster`: the next decision records that cluster's snapshot as it is now."""
        if self.seen:
            i = self.position[cluster]
            self.seen[i] = to_json(snapshot_to_dict(self.snapshots[i]))


class RunScopes:
    """Each run's project, domain and max wait, read once (a run's scope never changes)."""

    def __init__(self, runs: Runs):
        self._runs = runs
        self._scopes: dict[str, tuple[str, str, float | None]] = {}

    async def get(self, run: str) -> tuple[str, str, float | None]:
        scope = self._scopes.get(run)
        if scope is None:
            record = await self._runs.get_run(run)
            scope = self._scopes[run] = (record.project, record.domain, record.max_wait_seconds)
        return scope

    async def project(self, run: str) -> str:
        return (await self.get(run))[0]


class Placer:
    """The queue and the passes over it."""

    def __init__(
        self,
        runs: Runs,
        workers: WorkerTokens,
        scopes: RunScopes,
        sessions: AgentSessions,
        admin: ClusterAdmin,
        reservations: Reservations,
        parents: Mapping[Key, str],
        where: Mapping[Key, str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        retry: Callable[[], RetryDelay] = pass_retry,
        events: Counter[str] | None = None,
    ):
        self._runs = runs
        self._workers = workers
        self._scopes = scopes
        self._sessions = sessions
        self._admin = admin
        self._reservations = reservations
        self._parents = parents
        self._where = where
        self._clock = clock
        self._retry = retry
        self._events: Counter[str] = events if events is not None else Counter()
        """The gateway's event counters (`/metrics`): placements by a pass, and at submission."""
        self._queue = PlacementQueue()
        self._wake = asyncio.Event()
        self._fresh: list[Key] = []
        """Actions queued since the last pass: all a pass looks at unless capacity changed."""
        self._full_pass = True
        self.fence: Callable[[], Compare] | None = None
        """While this replica leads: its term's compare, carried by every placement write (`Election.fence`)."""
        self._made: dict[AttemptKey, Assignment] = {}
        """The assignments of the pass being written: the action watch sees them placed before the pass ends."""
        self._deferred: dict[AttemptKey, ActionSummary] = {}
        """Placements of those the action watch saw and left to the pass (`defer`)."""
        self.undelivered: Callable[[ActionSummary], None] = lambda _: None
        """Given a placement the watch left to the pass that the pass did not deliver: the watch's again."""
        self._submit_pass: _Pass | None = None
        """What placement at submission decides in (`place_at_submit`): the snapshots of this loop tick, shared by the
        children of a batch as a pass's decisions share its own."""
        self._judged: dict[Key, Pending] = {}
        """What placing children judged at submission needs, until the pass that sees them queued takes it."""
        self._submitted: dict[str, list[Assignment]] = defaultdict(list)
        """Assignments placed at submission and written, per cluster: each agent gets those of a tick in one message."""

    @property
    def queue(self) -> Mapping[Key, ActionSummary]:
        return self._queue.actions

    def observe(self, action: ActionSummary) -> None:
        """An action changed: queue it, or drop it from the queue, and give back what its ended attempts held."""
        key = (action.run, action.name)
        if action.phase is Phase.QUEUED:
            self._queue.put(action)
            if not self._full_pass:
                # (A full pass looks at every queued action: a follower, whose passes wait for the lead, keeps none.)
                self._fresh.append(key)
            self._wake.set()
        else:
            self._queue.drop(key)
        if self._reservations.observe(action.run, action.name, action.phase, action.attempts, action.cluster):
            self.rescan()

    def rescan(self) -> None:
        """Capacity changed: the next pass looks at the whole queue again, oldest first."""
        self._full_pass = True
        self._wake.set()

    def replan(self) -> None:
        """The policy or a cordon changed: every waiting reason may differ, so each is recorded again."""
        self._queue.forget_notes()
        self.rescan()

    async def run(self) -> None:
        """Pass after pass, each when something changed or a backoff or queue limit is due; returns only by raising
        (cancelled, or a bug)."""
        retry = self._retry()
        while True:
            timeout = None
            try:
                timeout = await self.place_some()
                retry.reset()
            except Exception as error:
                if not temporary(error):
                    log.exception("the placement loop stopped on a bug")
                    raise
                timeout = retry.next()
                log.warning("a placement pass failed (%s: %s); again in %.1fs", type(error).__name__, error, timeout)
            self._wake.clear()
            if not await wait_event(self._clock, self._wake, timeout):
                self._full_pass = True  # a backoff ended: look at the actions that were waiting for it

    async def place_some(self) -> float | None:
        """One pass over the queue in fair-share order; returns when to look again for actions still backing off.

        A pass after capacity changed walks the queue's groups (`gateway._queue`) and leaves each at its first
        action that waits for a reason all of it has recorded: its cost is what it places, not what waits.
        Decisions are made one by one (each reserves capacity before the next is made); the placed transitions,
        each with its decision record, are then written concurrently, so group commit puts many of them in one
        store transaction.
        """
        now = self._clock.time()
        full = self._full_pass
        fresh, self._fresh, self._full_pass = self._fresh, [], False
        if not self._sessions.live:
            # Nowhere to place anything; a session opening rescans the queue.
            return None
        if not self._queue.actions:
            # Nothing waits: a pass would only gather the clusters' snapshots. (A sequential child's end frees room
            # and asks for a full pass each time.)
            return None
        self._queue.valid_for(self._sessions.default_request, self._admin.policy)
        work = _Pass(now, self._snapshots())
        # The term this pass decides in: every placement it writes holds only while that term does.
        work.fence = self.fence() if self.fence is not None else None
        if full:
            await self._ready(work, self._queue.ungrouped())  # grouped now, decided below in arrival order
            if len(self._queue.projects()) <= 1:
                await self._walk(work)
                return await self._finish(work)
            # Fair share interleaves the projects over the whole queue, not group by group.
            keys = list(self._queue.actions)
        else:
            keys = [k for k in dict.fromkeys(fresh) if k in self._queue]
        pending = await self._ready(work, keys)
        if len({p.demand.project for _, p in pending}) > 1:
            usage = {project: used["cpu"] for project, used in self._reservations.usage.items()}
            by_key = dict(pending)
            pending = [
                (k, by_key[k]) for k in fair_share_order([(k, p.demand) for k, p in pending], usage, self._admin.policy)
            ]
        for key, item in pending:
            await self._decide(work, key, item)
        return await self._finish(work)

    async def _walk(self, work: _Pass) -> None:
        """Decide the whole queue group by group in arrival order, leaving each group at its first action that waits
        for a reason every action of the group has recorded already."""
        left: set[int] = set()
        for examined, key in enumerate(self._queue.walk(left)):
            if examined % 256 == 255:
                await asyncio.sleep(0)  # a long queue must not hold the loop that serves the API
            for _, item in await self._ready(work, [key]):
                group = self._queue.group_of(key)
                reason = await self._decide(work, key, item)
                if reason is not None and group is not None and self._queue.all_noted(key, reason):
                    left.add(group)

    async def _ready(self, work: _Pass, keys: list[Key]) -> list[tuple[Key, Pending]]:
        """What placing each of `keys` needs, for those still queued and not backing off."""
        out: list[tuple[Key, Pending]] = []
        for examined, key in enumerate(keys):
            action = self._queue.actions.get(key)
            if action is None:
                continue
            if examined % 256 == 255:
                await asyncio.sleep(0)  # a long queue must not hold the loop that serves the API
            if action.not_before is not None and action.not_before > work.now:
                work.due(action.not_before - work.now)
                continue
            item = self._queue.pending(key, action, work.now)
            judged = self._judged.pop(key, None) if item is None else None
            if judged is not None and judged.action.attempts == action.attempts:
                item = judged.with_action(action)
                self._queue.keep(key, item, work.now)
            elif item is None:
                try:
                    item = await self.pending(action, work.now)
                except UNJUDGEABLE as unjudgeable:
                    if not cannot_judge(unjudgeable):
                        raise
                    work.notes.append(self._unjudgeable(key, action, unjudgeable))
                    continue
                if self._queue.actions.get(key) is not action:
                    continue  # it changed while its task was read: the pass its change woke looks at it
                self._queue.keep(key, item, work.now)
            out.append((key, item))
        return out

    async def _decide(self, work: _Pass, key: Key, item: Pending) -> str | None:
        """Place one action, or record why it waits (returned), or fail it if it never fits or waited too long."""
        group = self._queue.group_of(key)
        # Within a pass room only shrinks: what the group's earlier action waited for, this one waits for too.
        decision = work.blocked.get(group) if group is not None else None
        follows = decision is not None
        assignment: Assignment | None = None
        if decision is None:
            try:
                decision = place(item.demand, work.snapshots, self._admin.policy, usage=self._reservations.usage)
                if decision.cluster is not None:
                    assignment = await self._assign(item, decision.cluster)
            except UNJUDGEABLE as unjudgeable:
                # One action the pass cannot judge fails alone; every other is still placed.
                if not cannot_judge(unjudgeable):
                    raise
                work.notes.append(self._unjudgeable(key, item.action, unjudgeable))
                return None
            if decision.cluster is None and not decision.never_fits:
                decision = self._explain_wait(item, decision, work.snapshots)
                if item.max_wait is None and not self._admin.policy.tiers and group is not None:
                    work.blocked[group] = decision  # neither the wait nor the tiers depend on how long it waited
        waiting = decision.cluster is None and not decision.never_fits
        waited_out = False
        if waiting and item.max_wait is not None:
            waited_out = item.demand.waited_seconds >= item.max_wait[0]
            work.due(item.max_wait[0] - item.demand.waited_seconds)
        if waiting and not waited_out and self._queue.noted.get(key) == decision.reason:
            return decision.reason  # still waiting, for the reason already recorded
        if follows and waiting and key not in self._queue.noted:
            # Its first wait, behind an earlier action of its group that this pass judged and recorded the decision
            # of (the same verdicts): its reason is written without a copy of that record (a 10,000-way fan-out
            # waiting for pool slots wrote 10,000 of them).
            self._queue.note(key, decision.reason)
            self._events["waiting_noted_by_pass"] += 1
            action = item.action
            work.notes.append(
                self._runs.note_waiting(action.run, action.name, action.attempts, decision.reason, seen=action)
            )
            return decision.reason
        record = record_put(item, work.seen, decision, work.now, work.fence.mod_revision if work.fence else None)
        if decision.cluster is not None:
            assert assignment is not None
            work.decided.append((assignment, record, item.action))
            self._runs.tracing.placed(item.action, decision.cluster, decision.scores, tier=decision.tier)
            self._queue.drop(key)
            work.chose(decision.cluster)
        elif decision.never_fits:
            detail = "; ".join(f"{k}: {v}" for k, v in decision.verdicts.items())
            message = f"{decision.reason} ({detail})" if detail else decision.reason
            # No retry could ever fit it either: the user's to fix (smaller resources), failed at once.
            error = NonRecoverableError.info(message, code="NeverFits")
            work.notes.append(self._fail_queued(item.action, error, record))
        elif waited_out:
            assert item.max_wait is not None
            error = waited_too_long(item.demand.waited_seconds, *item.max_wait, decision.reason)
            work.notes.append(self._fail_queued(item.action, error, record))
        else:
            self._queue.note(key, decision.reason)
            self._events["waiting_noted_by_pass"] += 1
            action = item.action
            work.notes.append(
                self._runs.note_waiting(
                    action.run, action.name, action.attempts, decision.reason, [record], seen=action
                )
            )
            return decision.reason
        return None

    async def _finish(self, work: _Pass) -> float | None:
        """Write the pass's decisions and notes, and send each agent its assignments."""
        decided = work.decided
        made = {AttemptKey(a.run, a.action, a.attempt): a for a, _, _ in decided}
        self._made.update(made)
        delivered: set[AttemptKey] = set()
        try:
            placed = await asyncio.gather(*(self._commit(*placement, work.fence) for placement in decided), *work.notes)
            assigned: dict[str, list[Assignment]] = defaultdict(list)
            for result in placed[: len(decided)]:
                if isinstance(result, Assignment):
                    assigned[result.cluster].append(result)
            self._events["placed_by_pass"] += sum(len(a) for a in assigned.values())
            # An agent held here gets its assignments now, in one message; one held by another replica gets them when
            # that replica sees the placements in its action watch (`Dispatcher._observed`).
            here = [(s, a) for c, a in assigned.items() if (s := self._sessions.sessions.get(c)) is not None]
            await deliver_placed(self._runs.store, here)
            delivered.update(AttemptKey(a.run, a.action, a.attempt) for _, batch in here for a in batch)
        finally:
            for key in made:
                self._made.pop(key, None)
                seen = self._deferred.pop(key, None)
                if seen is not None and key not in delivered:
                    self.undelivered(seen)  # the pass lost it (a race, a failure): the watch's to send after all
        return work.next_due

    async def place_at_submit(self, action: ActionSummary, here: ChildrenHere | None = None) -> AtSubmit | None:
        """Place a child as it is submitted, when this replica leads and the next pass would decide it first: its
        `placed` goes in the submission's own durable transaction, and its agent hears of it once that returns. That
        is one commit, one fsync and the watch-to-pass hop fewer on a child's way to its worker.

        It is decided as a pass decides an action that arrived alone. Actions that wait for room were judged against
        the room there is; they go first only once room comes back, and that makes the next pass a full one, oldest
        first: until it has run, and while earlier arrivals wait for their pass, submissions are left to the passes.

        A child that has to wait, in line or not, is judged so here as well (`WaitsAtSubmit`): it is written with its
        reason, and the pass that sees it finds the reason recorded and what placing it needs already known, so a
        fan-out wider than its room writes each waiting child once, not twice.

        None leaves the child to the passes (it is written queued): this replica does not lead, it fits but others
        go first, or the decision cannot be made here (the pass makes it again and says why).

        `here`: the submitting pool worker's offer (`ChildrenHere`). A child placed in its pool on its cluster, whose
        agent this replica holds, is given to the worker as well once written, and its agent told to hold it for
        the worker (`AgentSession.held`)."""
        if self.fence is None or action.phase is not Phase.QUEUED or self._known((action.run, action.name)):
            return None
        now = self._clock.time()
        try:
            item = await self.pending(action, now)
        except Exception:  # whatever it is, the pass meets it again, and judges and reports it
            return None
        if self.fence is None or not self._sessions.live:
            return None  # the term ended while its task was read
        try:
            fence = self.fence()
        except RuntimeError:  # the term is ending (`NotLeader`): the next leader's pass places it
            return None
        work = self._submit_pass
        if work is None:
            work = self._submit_pass = _Pass(now, self._snapshots())
            asyncio.get_running_loop().call_soon(setattr, self, "_submit_pass", None)
        # Neither the wait nor the tiers depend on how long it waited: the kind's wait stands for this tick.
        kind = group_key(item) if item.max_wait is None and not self._admin.policy.tiers else None
        decision = work.kinds_waiting.get(kind) if kind is not None else None
        if decision is not None:
            return self._waits_at_submit(item, decision.reason, [])
        behind = self._queue.waiting_reason(kind) if kind is not None and not self._first_in_line() else None
        if behind is not None:
            return self._waits_at_submit(item, behind, [])  # it queues behind its kind, all waiting for this
        decision = place(item.demand, work.snapshots, self._admin.policy, usage=self._reservations.usage)
        cluster = decision.cluster
        if cluster is None:
            if decision.never_fits or kind is None:
                return None  # the pass fails it, or judges it again as it waits longer
            decision = self._explain_wait(item, decision, work.snapshots)
            work.kinds_waiting[kind] = decision
            return self._waits_at_submit(
                item, decision.reason, [record_put(item, work.seen, decision, now, fence.mod_revision)]
            )
        if not self._first_in_line() or cluster not in self._sessions.live:
            self._judged_at_submit(item)
            return None
        try:
            assignment = await self._assign(item, cluster)
        except Exception:  # as above: the pass places it (`_assign` gave back what it reserved)
            return None
        record = record_put(item, work.seen, decision, now, fence.mod_revision)
        work.chose(cluster)
        attempt = (action.run, action.name, assignment.attempt)
        key = AttemptKey(*attempt)
        self._made[key] = assignment
        # Only where this replica holds the agent: it alone can tell the agent to hold the child for the worker.
        taker = (
            here if here is not None and cluster in self._sessions.sessions and here.take(cluster, assignment) else None
        )

        settled: list[bool] = []

        def settle(written: bool) -> None:
            if settled:
                return  # the first answer holds
            settled.append(written)
            if written:
                self._events["placed_at_submit"] += 1
                session = self._sessions.sessions.get(cluster)
                if session is not None and taker is not None and session.epoch == assignment.epoch:
                    session.held.add(key)
                    taker.give(assignment)  # first: the worker starts the child while the rest is done here
                self._runs.tracing.placed(action, cluster, decision.scores, tier=decision.tier)
                if session is not None:
                    if not self._submitted:
                        asyncio.get_running_loop().call_soon(self._deliver_submitted)
                    # Still `made` until it is delivered: the watch, which may see it placed before then (a lone
                    # write commits in this task, which goes on before the watch's sender), leaves it to us (`defer`)
                    # instead of making its assignment, a pending, a token, again.
                    self._submitted[cluster].append(assignment)
                    return
            elif self._reservations.release(attempt) is not None:
                self.rescan()
            if self._made.get(key) is assignment:
                del self._made[key]
            seen = self._deferred.pop(key, None)
            if taker is not None:
                taker.room += 1
            if seen is not None:
                self.undelivered(seen)  # the watch saw it placed and left it to us: the watch's to send after all

        event = ActionEvent(phase=Phase.PLACED, attempt=assignment.attempt, cluster=cluster, epoch=assignment.epoch)
        return PlacedAtSubmit(event, [record], fence, settle)

    def _waits_at_submit(self, item: Pending, reason: str, also: list[Op]) -> WaitsAtSubmit:
        """The child waits: written with `reason` (and `also`, its decision record, for the first of its kind in
        this tick). The queue knows the reason, and the pass what placing it needs, before the write returns: the
        pass may see the child queued first."""
        key = (item.action.run, item.action.name)
        self._queue.note(key, reason)
        self._judged_at_submit(item)
        settled: list[bool] = []

        def settle(written: bool) -> None:
            if settled:
                return
            settled.append(written)
            if written:
                self._events["waiting_noted_at_submit"] += 1
            else:
                self._queue.unnote(key)  # the pass notes it (or the action of that name) when it sees it queued

        return WaitsAtSubmit(reason, also, settle)

    def _judged_at_submit(self, item: Pending) -> None:
        """Keep what placing a child judged at its submission needs, for the pass that sees it queued."""
        if len(self._judged) >= _JUDGED_KEPT:
            self._judged.clear()  # a pass that finds none computes it again: bounded, whatever is never picked up
        self._judged[(item.action.run, item.action.name)] = item

    def _known(self, key: Key) -> bool:
        """Whether an action of this name is in flight already (a resubmission): its attempt's room is its own, and
        a placement made for the name again must not take that reservation's place."""
        return key in self._parents or bool(self._reservations.held_by(*key))

    def _first_in_line(self) -> bool:
        """Whether a child submitted now would be the next pass's first decision: this replica leads, and no action
        waits, or none waits for the pass that comes next: no full pass is due (room came back, or the policy changed)
        and no earlier arrival waits for its pass.

        A full pass with nothing queued and no child on its way to the queue (`noted`: judged waiting at its
        submission, its write not yet seen) would decide nothing: a child submitted then is first. Without this, every
        child submitted while others end (each end asks for a full pass) went through the queue and a pass, though
        nothing waited: one more write and a pass's decision per child."""
        if self.fence is None or not self._sessions.live:
            return False
        if not self._queue.actions and not self._queue.noted:
            return True
        return not self._full_pass and not self._fresh

    def _deliver_submitted(self) -> None:
        """Send each agent the children placed at submission whose transactions returned this tick, in one message."""
        submitted, self._submitted = self._submitted, defaultdict(list)
        for cluster, assignments in submitted.items():
            deferred = []
            for assignment in assignments:
                key = AttemptKey.of(assignment)
                if self._made.get(key) is assignment:
                    del self._made[key]
                if (seen := self._deferred.pop(key, None)) is not None:
                    deferred.append(seen)
            session = self._sessions.sessions.get(cluster)
            if session is not None:
                deliver(session, assignments)
            else:
                # Its agent went away meanwhile: the attempts stay placed, and move with the cluster's other work.
                log.info("%d attempts placed at submission on %s found no session", len(assignments), cluster)
                for seen in deferred:
                    self.undelivered(seen)  # the watch left them to us: its again (it finds no session either)

    def defer(self, placed: ActionSummary, cluster: str, epoch: int) -> bool:
        """Whether this replica's pass, still writing, placed `placed` (seen by the action watch) on `cluster` in
        session `epoch`: the pass then sends it with the rest of the pass, in one message (the watch sees a pass's
        placements a few at a time), and hands it back through `undelivered` if it does not."""
        key = AttemptKey(placed.run, placed.name, placed.attempts)
        made = self._made.get(key)
        if made is None or (made.cluster, made.epoch) != (cluster, epoch):
            return False
        self._deferred[key] = placed
        return True

    async def reserve_inflight(self, actions: list[ActionSummary]) -> None:
        """After a restart: what placed and running actions hold is held again, so it comes back when they end."""
        now = self._clock.time()
        for action in actions:
            if action.cluster is None or action.phase not in (Phase.PLACED, Phase.RUNNING):
                continue
            try:
                demand = (await self.pending(action, now)).demand
            except DomainError as error:
                log.warning("cannot account for %s/%s: %s", action.run, action.name, error.message)
                continue
            self._reservations.reserve((action.run, action.name, action.attempts), action.cluster, demand)

    async def pending(self, action: ActionSummary, now: float) -> Pending:
        """What placing `action` needs: its demand (from the task spec, its overrides and where its parent runs)."""
        project, domain, max_wait = await self._scopes.get(action.run)
        task = await self._runs.registry.get(project, domain, action.task, action.version)
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
            # Warm slots are counted per pool: another project's pool of the same environment is no warm start.
            warm_key=pool_key(project, domain, task.env, task.version) if reusable and prefer_warm else None,
            queue=spec.queue if spec.queue in self._admin.policy.queues else None,
            project=project,
            parent_cluster=self._where.get((action.run, action.parent)) if action.parent else None,
            waited_seconds=max(0.0, now - queued_since),
            spread_key=f"{action.run}/{action.parent}" if placement and placement.spread else None,
            # Store reads per input blob: only where the policy weighs data locality.
            input_bytes=await input_bytes(self._runs.store, action.inputs, self._sessions.known)
            if self._admin.policy.weights.data_locality and action.inputs
            else (),
            # A pool's action takes a slot of its pool, whose replicas hold the environment's request.
            pool=(pool_key(project, domain, task.env, task.version), reusable) if reusable is not None else None,
        )
        if reusable is None:
            # A one-off action starts a process of its own: asking for nothing must not mean it fits forever.
            demand = with_default_request(demand, self._sessions.default_request)
        return Pending(action, demand, task, project, domain, resources, reusable, timeout, limit)

    def _snapshots(self) -> list[ClusterSnapshot]:
        """Every registered cluster as placement sees it: connected ones live, the others as unhealthy."""
        out = []
        for name, record in sorted(self._sessions.known.items()):
            # Live through the store (`AgentSessions.live`): the leader places onto clusters held by any replica.
            live = self._sessions.live.get(name)
            out.append(
                ClusterSnapshot(
                    name=name,
                    region=record.region,
                    cloud=record.cloud,
                    capacity=record.capacity,
                    free=self._reservations.free(name) if live is not None else {},
                    warm=live.warm if live is not None else {},
                    healthy=live is not None,
                    cordoned=name in self._admin.cordons,
                    labels=record.labels,
                    cost_per_cpu_hour=record.cost_per_cpu_hour,
                    cost_per_gpu_hour=record.cost_per_gpu_hour,
                    placed_counts=self._reservations.placed_counts(name),
                    pool_in_flight=self._reservations.pool_in_flight(name),
                )
            )
        return out

    async def _assign(self, item: Pending, cluster: str) -> Assignment:
        """Reserve room on `cluster` for the action and make its assignment."""
        action = item.action
        attempt = (action.run, action.name, action.attempts + 1)
        # Reserved before the assignment is made (it awaits the signing key): a child placed at submission meanwhile
        # must see this room taken. An assignment that cannot be made holds no room.
        self._reservations.reserve(attempt, cluster, item.demand)
        try:
            return await self.assignment(item, attempt[2], cluster, self._sessions.live[cluster].epoch)
        except BaseException:
            if self._reservations.release(attempt) is not None:
                self.rescan()  # another decision may have waited for the room meanwhile
            raise

    async def assignment(self, item: Pending, attempt: int, cluster: str, epoch: int) -> Assignment:
        """What the agent of `cluster` (in session `epoch`) is told to run for attempt `attempt` of `item`."""
        action = item.action
        return Assignment(
            run=action.run,
            action=action.name,
            parent=action.parent,
            attempt=attempt,
            epoch=epoch,
            cluster=cluster,
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
            token=await self._workers.mint(AttemptRef(item.project, action.run, action.name, attempt)),
            traceparent=action.traceparent,
            source_root=item.task.spec.source_root,
        )

    async def _commit(
        self, assignment: Assignment, record: Put, action: ActionSummary, fence: Compare | None
    ) -> Assignment | None:
        """Record the placement (queued -> placed) with its decision; a lost race (aborted, placed elsewhere) gives
        the room back."""
        event = ActionEvent(
            phase=Phase.PLACED, attempt=assignment.attempt, cluster=assignment.cluster, epoch=assignment.epoch
        )
        try:
            await self._runs.report(assignment.run, assignment.action, event, [record], fence=fence, seen=action)
        except DomainError as error:
            log.info("placing %s/%s lost a race: %s", assignment.run, assignment.action, error.message)
            if self._reservations.release((assignment.run, assignment.action, assignment.attempt)) is not None:
                self.rescan()
            return None
        return assignment

    def _explain_wait(self, item: Pending, decision: Decision, snapshots: list[ClusterSnapshot]) -> Decision:
        """A waiting decision, its reason saying so when the action's own ancestors hold the room it needs."""
        action = item.action
        held: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        ancestor, seen = action.parent, 0
        while ancestor is not None and seen < 1000:  # a bound, not a depth anyone reaches: a cycle must not hang
            for hold in self._reservations.held_by(action.run, ancestor):
                held[hold.cluster]["cpu"] += hold.demand.cpu
                held[hold.cluster]["memory"] += float(hold.demand.memory)
            ancestor, seen = self._parents.get((action.run, ancestor)), seen + 1
        if not held:
            return decision
        reason = ancestors_bound(item.demand, decision, snapshots, held)
        return decision if reason is None else dataclasses.replace(decision, reason=reason)

    async def _fail_queued(self, action: ActionSummary, error: ErrorInfo, record: Put) -> None:
        """End a queued action that will not be placed (it never fits, or it waited longer than its run allows)."""
        with contextlib.suppress(DomainError):
            await self._runs.report(
                action.run,
                action.name,
                ActionEvent(phase=Phase.FAILED, attempt=max(action.attempts, 1), error=error),
                [record],
            )

    async def _unjudgeable(self, key: Key, action: ActionSummary, error: Exception) -> None:
        """Fail an action placement cannot judge (a spec or override it cannot read), so it stalls nobody else."""
        self._queue.drop(key)
        reason = error.message if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        log.warning("failing %s/%s: placement cannot judge it: %s", action.run, action.name, reason)
        message = f"placement cannot judge this action: {reason}"[:65_536]
        error_info = NonRecoverableError.info(message)
        with contextlib.suppress(DomainError):
            await self._runs.report(
                action.run,
                action.name,
                ActionEvent(phase=Phase.FAILED, attempt=max(action.attempts, 1), error=error_info),
            )
