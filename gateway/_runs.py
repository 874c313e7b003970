"""Runs and actions: creation, idempotent child submission, the action state machine, abort.

Keys (`gateway._keys`): a run record, one record per action, and a run's idempotency key. Every change is a
compare-and-swap on the mod revision of what it read, retried on conflict, so a late or duplicate event can never
move an action backwards:

    queued -> placed -> running -> succeeded | failed | aborted
       ^        |          |
       +--------+----------+   (re-placed after a lost cluster; a retry starts attempt + 1)

A root action reaching a terminal phase ends its run in the same transaction.

A run's `action_count` is kept on its record without a write per action: writing the run record on every
submission would make every child of a fan-out compare-and-swap one key. New actions are counted in memory and
added to the run record in one compare-and-swap per run every quarter second; what is still uncounted when the root
ends rides in the transaction that ends the run. A gateway that dies in between leaves the count short by at most
that quarter second's submissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from flyte._local_cache import cache_key
from flyte._naming import ROOT_ACTION, new_run_name
from flyte._retrying import capped_exponential
from flyte._wire import (
    ActionEvent,
    ActionSubmitRequest,
    ActionSummary,
    Assignment,
    ErrorInfo,
    Phase,
    RunCreateRequest,
    RunSummary,
    TaskSpec,
    WireValue,
)
from flyte.errors import ActionAbortedError, RetriesExhaustedError, is_retryable
from gateway._decoded import DecodedActions
from gateway._domain_errors import (
    Busy,
    Conflict,
    DomainError,
    Fenced,
    Forbidden,
    IllegalTransition,
    Invalid,
    NotFound,
    StaleAttempt,
    StaleEpoch,
)
from gateway._group_commit import GroupCommit
from gateway._keys import RUNS, action_key, actions_prefix, cache_entry_key, idempotency_key, notify_rules_key, run_key
from gateway._registry import Registry
from gateway._tracing import GatewayTracing
from gateway._values import check_inputs, check_output
from gateway.store import MAX_TXN_OPS, Compare, KeyValue, Op, Put, Store, StoreError, WatchEvent

log = logging.getLogger("flyte.gateway.runs")

SYSTEM_RETRIES = 3
"""Attempts the platform may lose to its own failures before an action fails; never the user's retries."""
SYSTEM_BACKOFF_CAP = 30.0
"""Seconds a system retry waits at most."""


def system_retry_delay(failures: int, draw: float | None = None) -> float:
    """How long the retry after an action's `failures`-th system failure waits: an exponential backoff (1, 2, 4 s ...
    up to `SYSTEM_BACKOFF_CAP`), of which a random half is kept (`draw` in [0, 1): none given, a fresh one). A lost
    cluster fails all of its attempts at once; without the jitter they would all come back in the same instant, to
    the same placement pass and the same agents' start-ups. Halved, a retry never waits longer than the backoff.
    Not `RetryDelay`'s full jitter, which may draw no wait at all: a retry keeps at least half its backoff."""
    backoff = capped_exponential(1.0, SYSTEM_BACKOFF_CAP, failures - 1)
    return backoff * (0.5 + 0.5 * (random.random() if draw is None else draw))


ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.PLACED, Phase.RUNNING, Phase.FAILED, Phase.ABORTED}),
    # A worker may report its result before its agent reports it started: placed -> succeeded is legal.
    Phase.PLACED: frozenset({Phase.RUNNING, Phase.SUCCEEDED, Phase.QUEUED, Phase.FAILED, Phase.ABORTED}),
    Phase.RUNNING: frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.QUEUED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.ABORTED: frozenset(),
}
_CAS_ATTEMPTS = 20
_RUN_RECORDS_KEPT = 1024
"""Run records kept decoded (`Runs.get_run`): the runs with actions in flight, in all but the largest gateways."""
COUNT_FLUSH_SECONDS = 0.25
_SCOPES_KEPT = 10_000
"""Runs whose project and domain `Runs` remembers (the oldest is forgotten first)."""


def run_identity(project: str, domain: str, name: str) -> str:
    """The federation-wide identity of a run a caller named `name` in a project and domain.

    Names are unique per project and domain, not globally: project beta may take a name project alpha uses, and
    neither learns of the other. Everything else (keys, tokens, assignments) names a run by this identity.
    """
    digest = hashlib.sha256(f"{project}/{domain}/{name}".encode()).hexdigest()[:12]
    return f"{name[:50]}-{digest}"


def decode_action(kv: KeyValue) -> ActionSummary:
    return ActionSummary.model_validate_json(kv.value).model_copy(update={"revision": kv.mod_revision})


def decode_event(event: WatchEvent) -> ActionSummary:
    """The action a watch event carries, with the event's revision."""
    return ActionSummary.model_validate_json(event.value).model_copy(update={"revision": event.mod_revision})


def decode_run(kv: KeyValue) -> RunSummary:
    return RunSummary.model_validate_json(kv.value)


@dataclass(frozen=True, slots=True)
class PlacedAtSubmit:
    """A child's placement decided as it is submitted (`Placer.place_at_submit`), to ride in its submission's
    transaction: its `placed` event, the decision record, and the leader's term it holds in."""

    event: ActionEvent
    also: list[Op]
    fence: Compare
    settle: Callable[[bool], None]
    """Told whether the submission was written with it: its agent is sent the attempt, or its room given back. The
    first answer holds; the submission answers False once more whatever happens, so nothing is left held."""


@dataclass(frozen=True, slots=True)
class WaitsAtSubmit:
    """A child judged as it is submitted to wait (`Placer.place_at_submit`): written queued with its waiting reason
    (and the decision record, for the first of its kind) in its submission's transaction, so the pass that sees it
    has nothing to write for it."""

    reason: str
    also: list[Op]
    settle: Callable[[bool], None]
    """Told whether the submission was written with it (as `PlacedAtSubmit.settle`)."""


AtSubmit = PlacedAtSubmit | WaitsAtSubmit
"""What placement made of a child as it was submitted."""


@dataclass(slots=True)
class ChildrenHere:
    """A pool worker's offer to start children of its own pool itself (`WorkerSubmit.room`). A child placed at its
    submission in that pool, on that worker's cluster, is sent to the worker as soon as its submission is written
    (`GatewayReply.here`), as well as to its agent, which holds it for the worker: the child starts without the
    gateway -> agent -> worker hops, and before the submission's own answer."""

    cluster: str
    """Where the submitting worker runs: its parent's cluster."""
    pool: str
    """The submitting worker's pool (`pool_key`)."""
    room: int
    """How many more it takes."""
    send: Callable[[list[Assignment]], None]
    """Sends the worker children to start."""
    given: int = 0
    _sending: list[Assignment] | None = None
    """Children given in this loop turn after its first, which left at once; None: none given this turn."""

    def take(self, cluster: str, assignment: Assignment) -> bool:
        """Whether the worker takes this child (placed on `cluster`); it then has one slot fewer to offer."""
        if self.room <= 0 or cluster != self.cluster or assignment.reusable is None:
            return False
        if assignment.pool_key != self.pool:
            return False
        self.room -= 1
        return True

    def give(self, assignment: Assignment) -> None:
        """Send the worker this child, written and placed: the first of a loop turn at once (a sequential child is
        the only one), those written after it in the same turn together."""
        self.given += 1
        if self._sending is None:
            self.send([assignment])
            self._sending = []
            asyncio.get_running_loop().call_soon(self._send)
        else:
            self._sending.append(assignment)

    def _send(self) -> None:
        sending, self._sending = self._sending, None
        if sending:
            self.send(sending)


def _encode(model: ActionSummary | RunSummary) -> bytes:
    return model.model_dump_json(exclude={"revision"} if isinstance(model, ActionSummary) else None).encode()


class Runs:
    def __init__(self, store: Store, registry: Registry, tracing: GatewayTracing | None = None):
        self._store = store
        self.registry = registry
        self.tracing = tracing or GatewayTracing(store, enabled=False)
        self._commit = GroupCommit(store)
        self.decoded = DecodedActions()
        """Action records by (key, revision): each decoded once, and the ones written here never."""
        self._uncounted: dict[str, int] = {}
        """New actions per run not yet added to the run record's `action_count`."""
        self._counter: asyncio.Task[None] | None = None
        self._closed = False
        self._scopes: dict[str, tuple[str, str]] = {}
        self._run_records: dict[str, tuple[int, RunSummary]] = {}
        """Run records as last decoded, by key with their revision: every submission and worker message reads its
        run, which rarely changes."""
        self.place_at_submit: Callable[[ActionSummary, ChildrenHere | None], Awaitable[AtSubmit | None]] | None = None
        """The leader's placement of a child as it is submitted (set by the dispatcher); None writes it queued."""

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The state store (placement reads the blob records of an action's inputs from it)."""
        return self._store

    def _decode(self, kv: KeyValue) -> ActionSummary:
        return self.decoded.decode(kv.key, kv.value, kv.mod_revision)

    async def get_run(self, run: str) -> RunSummary:
        kv = await self._store.get(run_key(run))
        if kv is None:
            raise NotFound(f"no run named {run}")
        known = self._run_records.get(kv.key)
        if known is not None and known[0] == kv.mod_revision:
            return known[1]
        summary = decode_run(kv)
        if len(self._run_records) >= _RUN_RECORDS_KEPT:
            del self._run_records[next(iter(self._run_records))]
        self._run_records[kv.key] = (kv.mod_revision, summary)
        return summary

    async def resolve(self, ref: str, scope: tuple[str, str]) -> RunSummary:
        """The run `ref` names: a name chosen in `scope` (project, domain), else an identity."""
        kv = await self._store.get(run_key(run_identity(*scope, ref)))
        if kv is not None:
            return decode_run(kv)
        return await self.get_run(ref)

    async def list_runs(
        self,
        project: str,
        domain: str,
        phase: Phase | None = None,
        task: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        kvs, _ = await self._store.range(RUNS)
        runs = []
        for kv in kvs:
            summary = decode_run(kv)
            if summary.project != project or summary.domain != domain:
                continue
            if phase is not None and summary.phase is not phase:
                continue
            if task is not None and summary.task != task:
                continue
            if labels and any(summary.labels.get(k) != v for k, v in labels.items()):
                continue
            runs.append(summary)
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return runs[:limit]

    async def get_action(self, run: str, action: str) -> ActionSummary:
        return (await self.read_action(run, action))[0]

    async def read_action(self, run: str, action: str) -> tuple[ActionSummary, KeyValue]:
        """The action and the record it was read from: a `report` given the action (`seen=`) does not read it again."""
        kv = await self._store.get(action_key(run, action))
        if kv is None:
            raise NotFound(f"run {run} has no action {action}")
        return self._decode(kv), kv

    async def list_actions(
        self, run: str, parent: str | None = None, phase: Phase | None = None
    ) -> tuple[list[ActionSummary], int]:
        kvs, revision = await self._store.range(actions_prefix(run))
        actions = [self._decode(kv) for kv in kvs]
        if parent is not None:
            actions = [a for a in actions if a.parent == parent]
        if phase is not None:
            actions = [a for a in actions if a.phase is phase]
        return actions, revision

    # -- creating --------------------------------------------------------------------------------------------

    async def create_run(self, request: RunCreateRequest) -> tuple[RunSummary, bool]:
        """Create a run and its root action; returns the run and whether it is new (idempotent by key)."""
        task = await self.registry.get(request.project, request.domain, request.task, request.version)
        _check_inputs(request.inputs, task.spec)
        digest = hashlib.sha256(request.model_dump_json(exclude={"name"}).encode()).hexdigest()
        idem_key = None
        if request.idempotency_key is not None:
            idem = hashlib.sha256(request.idempotency_key.encode()).hexdigest()
            idem_key = idempotency_key(request.project, request.domain, idem)
        now = time.time()
        for _ in range(_CAS_ATTEMPTS):
            if idem_key is not None:
                existing = await self._store.get(idem_key)
                if existing is not None:
                    return await self._answer_idempotent(existing, digest), False
            name = run_identity(request.project, request.domain, request.name) if request.name else new_run_name()
            traceparent, span_parent = self.tracing.root_context()
            run = RunSummary(
                name=name,
                task=request.task,
                version=task.version,
                phase=Phase.QUEUED,
                project=request.project,
                domain=request.domain,
                created_at=now,
                labels=request.labels,
                inputs=request.inputs,
                custom_context=request.custom_context,
                overwrite_cache=request.overwrite_cache,
                disable_run_cache=request.disable_run_cache,
                idempotency_key=request.idempotency_key,
                request_digest=digest,
                max_wait_seconds=request.max_wait_seconds,
                action_count=1,
                display_name=request.name,
            )
            root = ActionSummary(
                name=ROOT_ACTION,
                parent=None,
                task=request.task,
                version=task.version,
                phase=Phase.QUEUED,
                run=name,
                inputs=request.inputs,
                custom_context=request.custom_context,
                created_at=now,
                updated_at=now,
                traceparent=traceparent,
                span_parent=span_parent,
            )
            root = await self._with_cache(root, task.spec, run)
            if root.phase is Phase.SUCCEEDED:
                run = _end_run(run, root)
            compares = [Compare(run_key(name), 0)]
            ops: list[Op] = [Put(run_key(name), _encode(run)), Put(action_key(name, ROOT_ACTION), _encode(root))]
            if idem_key is not None:
                compares.append(Compare(idem_key, 0))
                ops.append(Put(idem_key, f"{name}\n{digest}".encode()))
            if request.notifications:
                rules = request.model_dump_json(include={"notifications"}).encode()
                ops.append(Put(notify_rules_key(name), rules))
            spans = self.tracing.ended(root) if root.phase.is_terminal else None  # a cache hit ends at once
            if spans is not None:
                ops.append(spans.put)
            result = await self._store.txn(compares, ops)
            if result.succeeded:
                if spans is not None:
                    self.tracing.written(spans)
                return run, True
            if result.current.get(run_key(name)) is not None and request.name is not None:
                raise Conflict(
                    f"a run named {request.name} already exists in {request.project}/{request.domain}; "
                    "run names are unique per project and domain",
                    code="run_exists",
                )
        raise Busy("run creation raced with others; try again")

    async def _answer_idempotent(self, existing: KeyValue, digest: str) -> RunSummary:
        name, _, first_digest = existing.value.decode().partition("\n")
        if first_digest != digest:
            raise Conflict(
                "this idempotency key was used for a different request; use a new key for a new run",
                code="idempotency_mismatch",
            )
        return await self.get_run(name)

    async def submit_many(
        self,
        run: RunSummary,
        requests: Sequence[ActionSubmitRequest],
        parents: Mapping[str, KeyValue] | None = None,
        here: ChildrenHere | None = None,
    ) -> list[tuple[ActionSummary, bool]]:
        """Add child actions to `run` (its record as the caller just read it); each answers the action and whether
        it is new, a resubmission of a name the existing action.

        A batch (a worker's `WorkerSubmit`) shares its run and its parents: the run is read once by the caller, and
        each parent once here (or not at all: `parents`, records of the run's actions the caller just read, by
        name), where reading both for every child made them two of the nine store reads per action. Each child is
        still judged on its own (`_submit_one`). The children are submitted concurrently, so their writes share
        transactions (group commit); when some are refused, the first refusal in request order is raised once every
        child has been tried: the others are written, and a resubmission of the batch answers them.

        `here`: the submitting pool worker's offer to start children of its own pool itself (`ChildrenHere`).
        """
        known: dict[str, KeyValue | None] = dict(parents or {})
        unread = list({r.parent for r in requests} - known.keys())
        records = await asyncio.gather(*(self._store.get(action_key(run.name, name)) for name in unread))
        known.update(zip(unread, records, strict=True))
        if len(requests) == 1:
            # A chain's call: in this task, without a task of its own and the turn of the loop it takes to start.
            request = requests[0]
            return [await self._submit_one(run, request, known[request.parent], here, alone=True)]
        results = await asyncio.gather(
            *(self._submit_one(run, r, known[r.parent], here) for r in requests), return_exceptions=True
        )
        submitted: list[tuple[ActionSummary, bool]] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            submitted.append(result)
        return submitted

    async def _submit_one(
        self,
        run_record: RunSummary,
        request: ActionSubmitRequest,
        parent: KeyValue | None,
        here: ChildrenHere | None = None,
        *,
        alone: bool = False,
    ) -> tuple[ActionSummary, bool]:
        """One child: answered by the existing action of its name if there is one, else refused when the run has
        ended, the parent does not exist or has ended, or its task or inputs do not check. `alone`: the only child
        of its submission (a chain's call), committed at once when nothing else is (`GroupCommit`).

        A new child's name is not looked up first: its write fails when the name is taken and reads the existing
        action in the same step, and a refusal looks before it is raised (a resubmission is still answered)."""
        run = run_record.name
        key = action_key(run, request.name)
        try:
            queued = await self._queued_child(run_record, request, parent)
        except DomainError:
            existing = await self._store.get(key)
            if existing is not None:
                return self._same_submission(self._decode(existing), request), False
            raise
        placing = self.place_at_submit
        placement = await placing(queued, here) if placing is not None else None
        try:
            return await self._write_child(key, run, request, queued, placement, alone)
        finally:
            if placement is not None:
                placement.settle(False)

    async def _write_child(
        self,
        key: str,
        run: str,
        request: ActionSubmitRequest,
        queued: ActionSummary,
        placement: AtSubmit | None,
        alone: bool,
    ) -> tuple[ActionSummary, bool]:
        """Write a new child, placed if `placement` says where (or with why it waits); answered by the existing
        action if its name is taken."""
        while True:
            compares = [Compare(key, 0)]
            if isinstance(placement, PlacedAtSubmit):
                action = _transition(queued, placement.event)
                compares.append(placement.fence)
            elif isinstance(placement, WaitsAtSubmit):
                action = queued.model_copy(update={"waiting": placement.reason})
            else:
                action = queued
            value = self.decoded.written(key, _encode(action), action)
            ops: list[Op] = [Put(key, value)]
            if placement is not None:
                ops.extend(placement.also)
            spans = self.tracing.ended(action) if action.phase.is_terminal else None  # a cache hit ends at once
            if spans is not None:
                ops.append(spans.put)
            result = await self._commit.txn(compares, ops, alone=alone)
            if placement is not None:
                placement.settle(result.succeeded)
            if result.succeeded:
                if spans is not None:
                    self.tracing.written(spans)
                self._count_new_action(run)
                return self.decoded.committed(key, value, action, result.revision), True
            current = result.current[key]
            if current is not None:
                return self._same_submission(self._decode(current), request), False
            # Only the placement's term failed its compare (another replica leads now): written queued instead.
            assert isinstance(placement, PlacedAtSubmit)
            placement = None

    async def _queued_child(
        self, run_record: RunSummary, request: ActionSubmitRequest, parent: KeyValue | None
    ) -> ActionSummary:
        """A new child's record as it enters the queue (or born succeeded, on a cache hit), once its run, parent, task
        and inputs check."""
        run = run_record.name
        if run_record.phase.is_terminal:
            raise Conflict(f"run {run} is {run_record.phase.value}; it takes no new actions", code="run_ended")
        if parent is None:
            raise NotFound(f"run {run} has no action {request.parent} (the parent)")
        if (parent_phase := self._decode(parent).phase).is_terminal:
            # Nobody would wait for it: an ended parent's worker may still hold a token (for its final report).
            raise Conflict(
                f"action {request.parent} of run {run} is {parent_phase.value}; it takes no new children",
                code="parent_ended",
            )
        task = await self.registry.get(run_record.project, run_record.domain, request.task, request.version)
        _check_inputs(request.inputs, task.spec)
        now = time.time()
        traceparent, span_parent = self.tracing.child_context(request.traceparent, lambda: self._decode(parent))
        action = ActionSummary(
            name=request.name,
            parent=request.parent,
            task=request.task,
            version=task.version,
            group=request.group,
            phase=Phase.QUEUED,
            run=run,
            inputs=request.inputs,
            custom_context=request.custom_context,
            created_at=now,
            updated_at=now,
            overrides=request.overrides,
            traceparent=traceparent,
            span_parent=span_parent,
        )
        return await self._with_cache(action, task.spec, run_record)

    async def _with_cache(self, action: ActionSummary, spec: TaskSpec, run: RunSummary) -> ActionSummary:
        """Attach the cache key of a cached task; on a hit, the action is born succeeded with the cached output."""
        cache = spec.cache
        if not cache.enabled or run.disable_run_cache:
            return action
        # A project's cache is its own: another tenant's result for the same task and inputs never answers it.
        key = f"{run.project}/{run.domain}/" + cache_key(
            spec.name,
            spec.interface_digest,
            cache.version,
            {name: value.to_encoded() for name, value in action.inputs.items()},
            tuple(cache.ignored_inputs),
            cache.salt,
        )
        action = action.model_copy(update={"cache_key": key})
        if run.overwrite_cache:
            return action
        hit = await self._store.get(cache_entry_key(key))
        if hit is None:
            return action
        now = time.time()
        return action.model_copy(
            update={
                "phase": Phase.SUCCEEDED,
                "cached": True,
                "output": WireValue.model_validate_json(hit.value),
                "started_at": now,
                "ended_at": now,
            }
        )

    @staticmethod
    def _same_submission(existing: ActionSummary, request: ActionSubmitRequest) -> ActionSummary:
        if existing.task != request.task or existing.parent != request.parent or existing.inputs != request.inputs:
            raise Conflict(
                f"action {request.name} already exists with another task, parent or inputs", code="name_collision"
            )
        return existing

    # -- the state machine -------------------------------------------------------------------------------------

    async def report(
        self,
        run: str,
        action: str,
        event: ActionEvent,
        also: Sequence[Op] = (),
        *,
        from_worker: bool = False,
        fence: Compare | None = None,
        seen: ActionSummary | None = None,
    ) -> ActionSummary:
        """Apply one state change to one attempt, as a compare-and-swap; refuse what would go backwards.

        `also` rides in the same transaction when the change is applied (the placement record of a placed event).
        `from_worker`: the reporter holds the run's worker token, so a result it reports was produced by the attempt
        and may be cached; a result from anyone else ends the action but is never written to the cache.
        `seen`: the action as the caller just read it (`read_action`) or last saw it (the queue's record, from the
        action watch), with its revision: compared against as a read here would be; a lost race reads it again.
        A `placed` or `running` mark is written without an fsync: a power cut may take it back (`gateway.store`), and
        recovery rebuilds it (`docs/reliability.md`). A placement is made durable before its agent hears of it
        (`Placer._finish`); a `running` need not be, as the attempt stays placed and its agent's next session keeps it
        (`AgentSessions._adopt`). A change that ends or requeues an attempt is durable before it returns.
        """
        key = action_key(run, action)
        output_checked = event.output is None
        known = seen if seen is not None and seen.revision else None
        for _ in range(_CAS_ATTEMPTS):
            current, known = known, None
            if current is None:
                kv = await self._store.get(key)
                if kv is None:
                    raise NotFound(f"run {run} has no action {action}")
                current = self._decode(kv)
            if _late_start(current, event):
                return current
            updated = _transition(current, event)
            if updated is current:
                return current
            if not output_checked and event.output is not None:
                await self._check_result(run, current, event.output)
                output_checked = True
            if updated.phase is Phase.FAILED:
                updated = await self._maybe_retry(updated, run)
            compares = [Compare(key, current.revision)] if fence is None else [Compare(key, current.revision), fence]
            value = self.decoded.written(key, _encode(updated), updated)
            ops: list[Op] = [Put(key, value), *also]
            if from_worker and updated.phase is Phase.SUCCEEDED and updated.cache_key and updated.output is not None:
                ops.append(Put(cache_entry_key(updated.cache_key), updated.output.model_dump_json().encode()))
            uncounted = 0
            if action == ROOT_ACTION and updated.phase.is_terminal:
                run_kv = await self._store.get(run_key(run))
                if run_kv is not None:
                    # Taken, not read: the count flusher must not add these again meanwhile.
                    uncounted = self._uncounted.pop(run, 0)
                    ended = _end_run(decode_run(run_kv), updated, uncounted)
                    compares.append(Compare(run_key(run), run_kv.mod_revision))
                    ops.append(Put(run_key(run), _encode(ended)))
            elif action == ROOT_ACTION and updated.phase is Phase.RUNNING:
                run_kv = await self._store.get(run_key(run))
                if run_kv is not None and decode_run(run_kv).phase is Phase.QUEUED:
                    started = decode_run(run_kv).model_copy(update={"phase": Phase.RUNNING})
                    compares.append(Compare(run_key(run), run_kv.mod_revision))
                    ops.append(Put(run_key(run), _encode(started)))
            spans = self.tracing.ended(updated) if updated.phase.is_terminal else None
            if spans is not None:
                ops.append(spans.put)
            mark = updated.phase in (Phase.PLACED, Phase.RUNNING)
            # An attempt's end is its reporter's one write; marks come many at once (a pass's, an agent's batch).
            result = await self._commit.txn(compares, ops, durable=not mark, alone=not mark)
            if result.succeeded:
                if spans is not None:
                    self.tracing.written(spans)
                return self.decoded.committed(key, value, updated, result.revision)
            self._count_new_action(run, uncounted)
            if fence is not None and await self._fenced(fence):
                raise Fenced(f"refused {event.phase.value} for {run}/{action}: the term it was decided in has ended")
        raise Busy(f"action {action} is changing too fast to update; try again")

    async def _fenced(self, fence: Compare) -> bool:
        kv = await self._store.get(fence.key)
        return (kv.mod_revision if kv is not None else 0) != fence.mod_revision

    # -- counting actions ------------------------------------------------------------------------------------

    def _count_new_action(self, run: str, count: int = 1) -> None:
        if count <= 0:
            return
        self._uncounted[run] = self._uncounted.get(run, 0) + count
        if not self._closed and (self._counter is None or self._counter.done()):
            self._counter = asyncio.create_task(self._count_soon(), name="action-count")

    async def _count_soon(self) -> None:
        while self._uncounted:
            await asyncio.sleep(COUNT_FLUSH_SECONDS)
            await self.flush_counts()

    async def flush_counts(self) -> None:
        """Add each run's new actions to its record's `action_count`, one compare-and-swap per run."""
        for run in list(self._uncounted):
            count = self._uncounted.pop(run, 0)
            try:
                added = await self._add_to_count(run, count)
            except StoreError as error:
                log.warning("could not count %d new actions of run %s: %s", count, run, error)
                added = False
            if not added:
                self._count_new_action(run, count)

    async def _add_to_count(self, run: str, count: int) -> bool:
        """False when the run record kept changing under us (it is tried again at the next flush)."""
        for _ in range(_CAS_ATTEMPTS):
            kv = await self._store.get(run_key(run))
            if kv is None:
                return True  # the run is gone: nothing to count on
            summary = decode_run(kv)
            counted = summary.model_copy(update={"action_count": summary.action_count + count})
            result = await self._store.txn([Compare(kv.key, kv.mod_revision)], [Put(kv.key, _encode(counted))])
            if result.succeeded:
                return True
        return False

    async def close(self) -> None:
        """Stop counting in the background; what is uncounted is written now."""
        if self._counter is not None and not self._counter.done():
            self._counter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counter
        self._closed = True
        await self.flush_counts()

    async def _check_result(self, run: str, action: ActionSummary, output: WireValue) -> None:
        project, domain = await self.scope_of(run)
        task = await self.registry.get(project, domain, action.task, action.version)
        check_output(output, task.spec)

    async def scope_of(self, run: str) -> tuple[str, str]:
        """A run's project and domain, which never change: remembered, so a result (or the authorization of a
        worker's report) costs no extra store read; `NotFound` for a run that does not exist."""
        scope = self._scopes.get(run)
        if scope is None:
            record = await self.get_run(run)
            if len(self._scopes) >= _SCOPES_KEPT:
                self._scopes.pop(next(iter(self._scopes)))
            scope = self._scopes[run] = (record.project, record.domain)
        return scope

    async def note_waiting(
        self,
        run: str,
        action: str,
        attempts: int,
        reason: str,
        also: Sequence[Op] = (),
        *,
        seen: ActionSummary | None = None,
    ) -> bool:
        """Record why a queued action is not placed yet; False when it is no longer queued at that attempt. `seen`:
        the action as the caller last saw it, with its revision (compared against as a read would be).

        Not durable: a power cut may take the reason back, and the next placement pass writes it again."""

        def noted(current: ActionSummary) -> ActionSummary | None:
            if current.phase is not Phase.QUEUED or current.attempts != attempts:
                return None
            return current if current.waiting == reason else current.model_copy(update={"waiting": reason})

        return await self._amend(run, action, noted, also, durable=False, seen=seen)

    async def requeue_placed(self, run: str, action: str, cluster: str, why: str) -> bool:
        """Give back an action placed on `cluster` that has not started (a drain): it queues for its next attempt
        without spending a retry, and a late event from `cluster` for the old attempt is refused as stale."""

        def requeued(current: ActionSummary) -> ActionSummary | None:
            if current.phase is not Phase.PLACED or current.cluster != cluster:
                return None
            update = {"phase": Phase.QUEUED, "cluster": None, "waiting": why, "updated_at": time.time()}
            return current.model_copy(update=update)

        return await self._amend(run, action, requeued)

    async def _amend(
        self,
        run: str,
        action: str,
        change: Callable[[ActionSummary], ActionSummary | None],
        also: Sequence[Op] = (),
        *,
        durable: bool = True,
        seen: ActionSummary | None = None,
    ) -> bool:
        """Compare-and-swap `change(current)` into the action; False when it answers None (no longer applies).
        `seen`: the action as last seen, with its revision, tried first without a read."""
        key = action_key(run, action)
        known = seen if seen is not None and seen.revision else None
        for _ in range(_CAS_ATTEMPTS):
            current, known = known, None
            if current is None:
                kv = await self._store.get(key)
                if kv is None:
                    return False
                current = self._decode(kv)
            changed = change(current)
            if changed is None:
                return False
            if changed is current:
                return True
            data = self.decoded.written(key, _encode(changed), changed)
            result = await self._commit.txn([Compare(key, current.revision)], [Put(key, data), *also], durable=durable)
            if result.succeeded:
                self.decoded.committed(key, data, changed, result.revision)
                return True
        return False

    async def _maybe_retry(self, failed: ActionSummary, run: str) -> ActionSummary:
        """A failure with budget left goes back to the queue as the next attempt, after its backoff.

        User errors spend the task's `retries`; system errors (a lost worker or cluster) spend a separate budget
        and never the user's.
        """
        error = failed.error
        assert error is not None
        if error.kind == "system":
            failures = failed.system_failures + 1
            if failures > SYSTEM_RETRIES:
                exhausted = RetriesExhaustedError.info(
                    f"{failures} system failures; the last: {error.code}: {error.message}",
                    traceback=error.traceback,
                    worker=error.worker,
                )
                return failed.model_copy(update={"system_failures": failures, "error": exhausted})
            return _requeued(failed, {"system_failures": failures}, delay=system_retry_delay(failures))
        if not is_retryable(error.error_type):
            return failed
        run_record = await self.get_run(run)
        spec = (await self.registry.get(run_record.project, run_record.domain, failed.task, failed.version)).spec
        failures = failed.user_failures + 1
        retries = failed.overrides.retries if failed.overrides and failed.overrides.retries is not None else None
        if failures > (spec.retries if retries is None else retries):
            return failed.model_copy(update={"user_failures": failures})
        return _requeued(failed, {"user_failures": failures}, delay=spec.backoff.delay(failures))

    async def abort(self, run: str, reason: str) -> RunSummary:
        """End a run as aborted and abort every action of it that has not ended."""
        for _ in range(_CAS_ATTEMPTS):
            kv = await self._store.get(run_key(run))
            if kv is None:
                raise NotFound(f"no run named {run}")
            summary = decode_run(kv)
            if summary.phase.is_terminal:
                return summary
            aborted = summary.model_copy(
                update={
                    "phase": Phase.ABORTED,
                    "ended_at": time.time(),
                    "abort_reason": reason,
                    "error": _aborted_error(reason),
                }
            )
            result = await self._store.txn(
                [Compare(run_key(run), kv.mod_revision)], [Put(run_key(run), _encode(aborted))]
            )
            if result.succeeded:
                await self._abort_actions(run, reason)
                return aborted
        raise Busy(f"run {run} is changing too fast to abort; try again")

    async def _abort_actions(self, run: str, reason: str) -> None:
        for _ in range(_CAS_ATTEMPTS):
            kvs, _ = await self._store.range(actions_prefix(run))
            live = [kv for kv in kvs if not self._decode(kv).phase.is_terminal]
            if not live:
                return
            now = time.time()
            # One op of each transaction is left for the aborted actions' spans.
            for batch in _batches(live, MAX_TXN_OPS - 1):
                compares = [Compare(kv.key, kv.mod_revision) for kv in batch]
                update = {"phase": Phase.ABORTED, "ended_at": now, "updated_at": now, "error": _aborted_error(reason)}
                aborted = [self._decode(kv).model_copy(update=update) for kv in batch]
                ops: list[Op] = [Put(kv.key, _encode(action)) for kv, action in zip(batch, aborted, strict=True)]
                spans = self.tracing.ended(*aborted)
                if spans is not None:
                    ops.append(spans.put)
                if (await self._store.txn(compares, ops)).succeeded and spans is not None:
                    self.tracing.written(spans)
        raise Busy(f"could not abort every action of run {run}; try again")


def _requeued(failed: ActionSummary, counters: dict[str, int], delay: float) -> ActionSummary:
    now = time.time()
    return failed.model_copy(
        update={
            **counters,
            "phase": Phase.QUEUED,
            "ended_at": None,
            "not_before": now + delay,
            "cluster": None,
            "output": None,
        }
    )


def _batches(items: Sequence[KeyValue], size: int) -> list[Sequence[KeyValue]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _aborted_error(reason: str) -> ErrorInfo:
    return ActionAbortedError.info(reason)


def _check_inputs(inputs: Mapping[str, WireValue], spec: TaskSpec) -> None:
    known = spec.parameters
    unknown = [name for name in inputs if name not in known]
    if unknown:
        raise Invalid(f"unknown inputs {sorted(unknown)}; the task takes {sorted(known)}", code="unknown_input")
    missing = spec.required_inputs.difference(inputs)
    if missing:
        raise Invalid(f"missing inputs {sorted(missing)}", code="missing_input")
    check_inputs(inputs, spec)


def _end_run(run: RunSummary, root: ActionSummary, uncounted: int = 0) -> RunSummary:
    return run.model_copy(
        update={
            "phase": root.phase,
            "ended_at": root.ended_at,
            "output": root.output,
            "error": root.error,
            "action_count": run.action_count + uncounted,
        }
    )


def _late_start(current: ActionSummary, event: ActionEvent) -> bool:
    """Whether `event` is a `running` of an attempt that has already ended (its worker's result came first, carrying
    the start): it is acknowledged and changes nothing, as an ended record never changes."""
    return (
        event.phase is Phase.RUNNING
        and event.attempt == current.attempts
        and current.phase.is_terminal
        and event.cluster in (None, current.cluster)
    )


def _started_at(current: ActionSummary, at: float | None, now: float) -> float:
    """A reporter's time, kept between the action's creation and its end (or now): clocks differ a little."""
    at = at if at is not None else now
    latest = current.ended_at if current.ended_at is not None else now
    return max(min(at, latest, now), current.created_at or 0.0)


def _transition(current: ActionSummary, event: ActionEvent) -> ActionSummary:
    """The action after the event, `current` itself for a duplicate; a `Conflict` (or `Forbidden`, `Invalid`) for
    an event that may not change it."""
    target = event.phase
    if event.cluster is not None and current.cluster == event.cluster and event.epoch < current.epoch:
        raise StaleEpoch(
            f"stale event from {event.cluster} epoch {event.epoch}; the action belongs to epoch {current.epoch}"
        )
    # An attempt starts when an action leaves the queue; every other event belongs to the current attempt.
    starts_attempt = current.phase is Phase.QUEUED and target in (Phase.PLACED, Phase.RUNNING)
    if not starts_attempt and event.cluster is not None and current.cluster not in (None, event.cluster):
        # An agent speaks only for its own cluster: it cannot move or end an attempt placed on another.
        raise Forbidden(
            f"{current.name} runs on cluster {current.cluster}, not on {event.cluster}", code="wrong_cluster"
        )
    current_attempt = max(current.attempts, 1)
    if target is current.phase and event.attempt == current_attempt:
        return current
    expected = current.attempts + 1 if starts_attempt else current_attempt
    if event.attempt != expected:
        raise StaleAttempt(f"event for attempt {event.attempt} of {current.name}, which expects attempt {expected}")
    if target not in ALLOWED[current.phase]:
        raise IllegalTransition(f"{current.name} cannot go from {current.phase.value} to {target.value}")
    if target is Phase.SUCCEEDED and event.error is not None:
        raise Invalid("a succeeded event carries no error")
    if target is Phase.FAILED and event.error is None:
        raise Invalid("a failed event must carry the error")
    now = time.time()
    update: dict[str, object] = {"phase": target, "updated_at": now, "attempts": expected, "waiting": None}
    if target in (Phase.PLACED, Phase.RUNNING) and event.cluster is not None:
        update["cluster"] = event.cluster
        update["epoch"] = event.epoch
    if target is Phase.RUNNING and current.started_at is None:
        update["started_at"] = _started_at(current, event.at, now)
    if target.is_terminal:
        if current.started_at is None:
            # Its `running` is still on its way (a warm pool's agent batches events): the result says when it began.
            update["started_at"] = _started_at(current, event.started_at, now)
        update["ended_at"] = now
        update["output"] = event.output
        update["error"] = event.error
    return current.model_copy(update=update)
