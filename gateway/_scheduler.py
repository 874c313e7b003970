"""The scheduler: starts the runs of deployed tasks' triggers (`flyte.Trigger` with `Cron` or `FixedRate`) on time.

The latest deployed version of each environment says which triggers exist; each has a record in the store
(`/flyte/triggers/{project}/{domain}/{task}/{trigger}`, a `TriggerRecord`) holding whether it is active and its
next firing time. A pass (`tick`) fires every active trigger whose next firing time has come:

1. **claim**: a compare-and-swap on the record moves `next_at` past now and notes the firing in `pending_at`.
   Of several schedulers (gateway replicas, or one restarted) reading the same record, one claim succeeds.
2. **start**: the run is created with the idempotency key `trigger:<trigger>:<firing time>`, so doing this twice
   (a crash between 2 and 3, then a pass that finishes the pending firing) starts one run.
3. **record**: a second compare-and-swap clears `pending_at` and notes the run.

So each firing starts exactly one run, across restarts and replicas. Missed firings (the gateway was down, or the
trigger inactive): only the most recent one is fired, once, and the next is the first after now; a trigger seen
for the first time, or re-activated, fires from the next firing time on. `start`/`stop` run passes in the
background, so high availability can run the scheduler on the leader only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import TypeAdapter

from flyte._wire import CronSpec, FixedRateSpec, RunCreateRequest, TriggerRecord, TriggerSpec, WireValue
from gateway._domain_errors import Busy, Conflict, DomainError, NotFound
from gateway._keys import TASKS_LATEST, TRIGGERS, trigger_key, triggers_prefix
from gateway._registry import Registry
from gateway._runs import Runs
from gateway.store import Compare, Delete, KeyValue, Put, Store, StoreError

log = logging.getLogger("flyte.gateway.scheduler")

TIME_INPUT_TYPES = frozenset({"datetime", "str"})
_DATETIME = TypeAdapter(datetime.datetime)

Automation = CronSpec | FixedRateSpec
Clock = Callable[[], float]
Deployed = tuple[str, str, str, TriggerSpec]
"""A deployed trigger: project, domain, task and the trigger."""


# -- firing times ------------------------------------------------------------------------------------------------


def next_after(automation: Automation, anchor: float, t: float) -> float:
    """The first firing strictly after `t`."""
    if isinstance(automation, CronSpec):
        start = datetime.datetime.fromtimestamp(t, ZoneInfo(automation.timezone))
        return float(croniter(automation.expression, start).get_next(float))
    base, step, first = _grid(automation, anchor)
    return base + max(first, math.floor((t - base) / step) + 1) * step


def latest_at_or_before(automation: Automation, anchor: float, t: float) -> float | None:
    """The last firing at or before `t` (None when there is none yet)."""
    if isinstance(automation, CronSpec):
        # croniter's previous firing is strictly before its start: start just past `t`'s second.
        start = datetime.datetime.fromtimestamp(math.floor(t) + 1, ZoneInfo(automation.timezone))
        return float(croniter(automation.expression, start).get_prev(float))
    base, step, first = _grid(automation, anchor)
    k = math.floor((t - base) / step)
    return None if k < first else base + k * step


def _grid(automation: FixedRateSpec, anchor: float) -> tuple[float, float, int]:
    """A fixed rate's firings are `base + k * step` for k >= first: from its start time on (itself included),
    else from one interval after it was first seen."""
    step = automation.interval_minutes * 60.0
    if automation.start_time is not None:
        return automation.start_time, step, 0
    return anchor, step, 1


def automation_digest(automation: Automation) -> str:
    return hashlib.sha256(automation.model_dump_json().encode()).hexdigest()[:32]


def time_value(at: float) -> WireValue:
    """A firing time as a task input: ISO 8601 UTC JSON text, which a `datetime` or a `str` parameter takes."""
    data = _DATETIME.dump_json(datetime.datetime.fromtimestamp(at, datetime.UTC))
    return WireValue(kind="json", digest=hashlib.sha256(data).hexdigest(), json_text=data.decode())


def idempotency_key(record: TriggerRecord, at: float) -> str:
    where = hashlib.sha256(f"{record.project}/{record.domain}/{record.task}/{record.name}".encode()).hexdigest()
    return f"trigger:{record.name[:40]}:{where[:24]}:{at:.0f}"


# -- the component -----------------------------------------------------------------------------------------------


class Scheduler:
    """Fires due triggers in passes; `tick()` is one pass (tests drive it with a manual clock)."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        runs: Runs,
        clock: Clock = time.time,
        interval: float = 1.0,
        events: Counter[str] | None = None,
    ):
        self._store = store
        self._events: Counter[str] = Counter() if events is None else events
        """`/metrics` counters: trigger_firings, trigger_errors, and runs_created for the runs it starts."""
        self._registry = registry
        self._runs = runs
        self._clock = clock
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.ticks = 0
        self._pointers: tuple[tuple[str, int], ...] | None = None
        self._triggers: dict[str, Deployed] = {}
        """Passes completed since this scheduler started (the API shows it: tests wait for passes with it)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="trigger-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Run a pass now (a trigger was activated)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            delay = self._interval
            try:
                soonest = await self.tick()
                if soonest is not None:
                    delay = min(delay, max(0.05, soonest - self._clock()))
            except StoreError as error:
                log.warning("trigger pass skipped: %s", error)
            except Exception:
                log.exception("trigger pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not `wait_for`, which on 3.11 can swallow a cancel
                    await self._wake.wait()

    # -- one pass ----------------------------------------------------------------------------------------------

    async def tick(self) -> float | None:
        """Reconcile the records with the deployed triggers, fire the due ones; returns the soonest next firing."""
        deployed = await self._deployed()
        kvs, _ = await self._store.range(TRIGGERS)
        records = {kv.key: kv for kv in kvs}
        soonest: float | None = None
        for key, trigger in deployed.items():
            try:
                next_at = await self._one(key, records.get(key), trigger)
            except StoreError:
                raise
            except Exception:
                # One trigger's fault (a bug, a record that no longer parses) must not stop the others firing.
                log.exception("trigger %s skipped in this pass", key)
                continue
            if next_at is not None:
                soonest = next_at if soonest is None else min(soonest, next_at)
        for key, kv in records.items():
            if key not in deployed:
                # The trigger left the latest deployment: it no longer fires.
                await self._store.txn([Compare(key, kv.mod_revision)], [Delete(key)])
        self.ticks += 1
        return soonest

    async def _one(self, key: str, kv: KeyValue | None, trigger: Deployed) -> float | None:
        """Reconcile one trigger's record and fire it if due; its next firing time while it is active."""
        project, domain, task, spec = trigger
        kv = await self._reconcile(kv, key, project, domain, task, spec)
        if kv is None:
            return None
        record = TriggerRecord.model_validate_json(kv.value)
        if record.pending_at is not None or (record.active and record.next_at <= self._clock()):
            record = await self._fire(kv, spec)
        return record.next_at if record.active else None

    async def _deployed(self) -> dict[str, Deployed]:
        """The triggers of every environment's latest version; read again only when a latest pointer moved."""
        pointers, _ = await self._store.range(TASKS_LATEST)
        seen = tuple((kv.key, kv.mod_revision) for kv in pointers)
        if seen != self._pointers:
            self._triggers = await self._read_deployed(pointers)
            self._pointers = seen
        return self._triggers

    async def _read_deployed(self, pointers: list[KeyValue]) -> dict[str, Deployed]:
        scopes = sorted({tuple(kv.key[len(TASKS_LATEST) :].split("/")[:2]) for kv in pointers})
        found: dict[str, Deployed] = {}
        for project, domain in scopes:
            for version in await self._registry.list_latest(project, domain):
                for spec in version.spec.triggers:
                    found[trigger_key(project, domain, version.spec.name, spec.name)] = (
                        project,
                        domain,
                        version.spec.name,
                        spec,
                    )
        return found

    async def _reconcile(
        self, kv: KeyValue | None, key: str, project: str, domain: str, task: str, spec: TriggerSpec
    ) -> KeyValue | None:
        """The trigger's record, made when it is first seen, its firings moved when its automation changed."""
        now = self._clock()
        digest = automation_digest(spec.automation)
        if kv is not None:
            current = TriggerRecord.model_validate_json(kv.value)
            if current.automation_digest == digest and current.description == spec.description:
                return kv
            record = current.model_copy(update={"description": spec.description})
            if current.automation_digest != digest:
                # A new schedule: its firings start from now, as a trigger seen for the first time.
                moved = {"automation": spec.automation, "automation_digest": digest, "anchor": now}
                record = record.model_copy(update={**moved, "next_at": next_after(spec.automation, now, now)})
        else:
            record = TriggerRecord(
                project=project,
                domain=domain,
                task=task,
                name=spec.name,
                automation=spec.automation,
                description=spec.description,
                active=spec.auto_activate,
                anchor=now,
                next_at=next_after(spec.automation, now, now),
                automation_digest=digest,
            )
        return await self._swap(key, kv, record)

    async def _swap(self, key: str, kv: KeyValue | None, record: TriggerRecord) -> KeyValue | None:
        """Write `record` if `key` is still as read; None when another writer got there first."""
        value = record.model_dump_json().encode()
        result = await self._store.txn([Compare(key, kv.mod_revision if kv else 0)], [Put(key, value)])
        if not result.succeeded:
            return None
        return KeyValue(key, value, kv.create_revision if kv else result.revision, result.revision, 0)

    async def _fire(self, kv: KeyValue, spec: TriggerSpec) -> TriggerRecord:
        record = TriggerRecord.model_validate_json(kv.value)
        if record.pending_at is None:
            now = self._clock()
            due = latest_at_or_before(record.automation, record.anchor, now) or record.next_at
            claim = record.model_copy(
                update={"pending_at": due, "next_at": next_after(record.automation, record.anchor, now)}
            )
            claimed = await self._swap(kv.key, kv, claim)
            if claimed is None:
                return record  # another scheduler claimed this firing
            kv, record = claimed, claim
        at = record.pending_at
        if at is None:
            return record
        outcome: dict[str, object] = {"pending_at": None, "last_fired_at": at, "fired": record.fired + 1}
        try:
            run, created = await self._runs.create_run(self._request(record, spec, at))
            outcome.update(last_run=run.name, last_error=None)
            self._events["trigger_firings"] += 1
            self._events["runs_created"] += int(created)
            log.info("trigger %s of %s fired for %s: run %s", record.name, record.task, at, run.name)
        except (DomainError, ValueError) as error:
            # The deployed task cannot take this run (its inputs changed, say): a later firing may; this one is done.
            message = f"{error.code}: {error.message}" if isinstance(error, DomainError) else str(error)
            outcome.update(last_error=message[:4096])
            self._events["trigger_errors"] += 1
            log.warning("trigger %s of %s could not start a run: %s", record.name, record.task, message)
        return await self._finish(kv, at, outcome) or record

    async def _finish(self, kv: KeyValue, at: float, outcome: dict[str, object]) -> TriggerRecord | None:
        """Clear the pending firing, again on a fresh read if the record changed meanwhile (activated, say)."""
        for _ in range(5):
            current = TriggerRecord.model_validate_json(kv.value)
            if current.pending_at != at:
                return current  # someone else finished it
            done = current.model_copy(update=outcome)
            if await self._swap(kv.key, kv, done) is not None:
                return done
            fresh = await self._store.get(kv.key)
            if fresh is None:
                return None
            kv = fresh
        return None  # still pending: the next pass finishes it (idempotently)

    @staticmethod
    def _request(record: TriggerRecord, spec: TriggerSpec, at: float) -> RunCreateRequest:
        inputs = dict(spec.inputs)
        if spec.trigger_time_input is not None:
            inputs[spec.trigger_time_input] = time_value(at)
        return RunCreateRequest(
            project=record.project,
            domain=record.domain,
            task=record.task,
            inputs=inputs,
            labels={**spec.labels, "flyte.trigger": record.name},
            overwrite_cache=spec.overwrite_cache,
            idempotency_key=idempotency_key(record, at),
            notifications=spec.notifications,
        )

    # -- reading and activation --------------------------------------------------------------------------------

    async def list(self, project: str, domain: str) -> list[TriggerRecord]:
        kvs, _ = await self._store.range(triggers_prefix(project, domain))
        return [TriggerRecord.model_validate_json(kv.value) for kv in kvs]

    async def set_active(self, project: str, domain: str, task: str | None, name: str, active: bool) -> TriggerRecord:
        """Activate or deactivate a trigger; activating fires from the next firing time on (no catching up)."""
        for _ in range(5):
            kv = await self._find(project, domain, task, name)
            record = TriggerRecord.model_validate_json(kv.value)
            if record.active == active:
                return record
            changed = record.model_copy(update={"active": active})
            if active:
                next_at = next_after(record.automation, record.anchor, self._clock())
                changed = changed.model_copy(update={"next_at": next_at})
            if await self._swap(kv.key, kv, changed) is not None:
                self.wake()
                return changed
        raise Busy("the trigger changed while it was updated; try again")

    async def _find(self, project: str, domain: str, task: str | None, name: str) -> KeyValue:
        matches = [
            kv
            for kv in (await self._store.range(triggers_prefix(project, domain)))[0]
            if kv.key.rsplit("/", 1)[1] == name and (task is None or kv.key.split("/")[-2] == task)
        ]
        if not matches:
            raise NotFound(f"no trigger {name} in {project}/{domain}; `flyte get triggers` lists them")
        if len(matches) > 1:
            tasks = sorted(kv.key.split("/")[-2] for kv in matches)
            raise Conflict(f"tasks {tasks} each have a trigger {name}; name the task", code="ambiguous")
        return matches[0]
