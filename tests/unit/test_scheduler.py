"""The gateway's trigger scheduler, with a manual clock on the embedded store: when triggers fire, that each firing
starts one run (also with two schedulers racing, and after a crash between claiming a firing and recording its
run), missed firings, activation, and triggers leaving a deployment."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from etcd_process import EtcdProcess

import flyte
from flyte._deploy import task_spec
from flyte._wire import CronSpec, DeployRequest, FixedRateSpec, TriggerRecord, TriggerSpec
from gateway._registry import Registry
from gateway._runs import Runs
from gateway._scheduler import Scheduler, latest_at_or_before, next_after, time_value
from gateway.store import Store, open_store

T0 = datetime.datetime(2026, 12, 5, 10, 0, 30, tzinfo=datetime.UTC).timestamp()
MINUTE = 60.0

env = flyte.TaskEnvironment("sched_unit")


@env.task(
    triggers=[
        flyte.Trigger("every2", flyte.FixedRate(2), inputs={"when": flyte.TriggerTime, "n": 7}),
        flyte.Trigger("off", flyte.Cron("*/5 * * * *"), auto_activate=False, inputs={"when": flyte.TriggerTime}),
    ]
)
async def stamp(when: datetime.datetime, n: int = 1) -> str:
    return f"{when.isoformat()} {n}"


@dataclass
class ManualClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def runs(store: Store) -> AsyncIterator[Runs]:
    registry = Registry(store)
    made = Runs(store, registry)
    await registry.deploy(_deployment("v1"))
    try:
        yield made
    finally:
        await made.close()


def _deployment(version: str, with_triggers: bool = True) -> DeployRequest:
    spec = task_spec(stamp)
    if not with_triggers:
        spec = spec.model_copy(update={"triggers": []})
    return DeployRequest(
        project="p", domain="d", env="sched_unit", version=version, bundle_digest="0" * 64, tasks=[spec]
    )


async def _records(scheduler: Scheduler) -> dict[str, TriggerRecord]:
    return {r.name: r for r in await scheduler.list("p", "d")}


async def _trigger_runs(runs: Runs) -> list[str]:
    found = await runs.list_runs("p", "d", labels={"flyte.trigger": "every2"})
    return sorted(json.loads(r.inputs["when"].json_text or "null") for r in found)


def test_firing_times_of_cron_and_fixed_rate() -> None:
    cron = CronSpec(expression="0 9 * * *", timezone="Europe/Paris")
    at = next_after(cron, 0, T0)  # 10:00:30 UTC is 11:00:30 in Paris: the next 09:00 there is tomorrow 08:00 UTC
    assert datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat() == "2026-12-06T08:00:00+00:00"
    assert latest_at_or_before(cron, 0, at) == at
    assert latest_at_or_before(cron, 0, at - 1) == at - 86400
    minutely = CronSpec(expression="* * * * *")
    assert next_after(minutely, 0, T0) == T0 + 30
    assert latest_at_or_before(minutely, 0, T0) == T0 - 30
    seen = FixedRateSpec(interval_minutes=2)  # counted from when it was first seen (T0), the first one interval later
    assert next_after(seen, T0, T0) == T0 + 2 * MINUTE
    assert latest_at_or_before(seen, T0, T0 + 1) is None
    assert latest_at_or_before(seen, T0, T0 + 5 * MINUTE) == T0 + 4 * MINUTE
    started = FixedRateSpec(interval_minutes=2, start_time=T0 - 3 * MINUTE)  # on its start time's grid
    assert next_after(started, T0, T0) == T0 + MINUTE
    assert latest_at_or_before(started, T0, T0) == T0 - MINUTE
    assert time_value(T0).json_text == '"2026-12-05T10:00:30Z"'


async def test_a_trigger_fires_once_when_due_with_its_time_as_an_input(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    assert await scheduler.tick() == T0 + 2 * MINUTE  # first seen: nothing due yet
    records = await _records(scheduler)
    assert records["every2"].active
    assert not records["off"].active
    assert await _trigger_runs(runs) == []
    clock.now = T0 + 2 * MINUTE
    await scheduler.tick()
    await scheduler.tick()
    assert await _trigger_runs(runs) == ["2026-12-05T10:02:30Z"]
    record = (await _records(scheduler))["every2"]
    assert (record.fired, record.pending_at, record.next_at) == (1, None, T0 + 4 * MINUTE)
    run = await runs.get_run(record.last_run or "")
    assert json.loads(run.inputs["n"].json_text or "") == 7
    assert await runs.list_runs("p", "d", labels={"flyte.trigger": "off"}) == []


async def test_two_schedulers_racing_start_each_firing_once(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    a, b = Scheduler(store, runs.registry, runs, clock), Scheduler(store, runs.registry, runs, clock)
    await asyncio.gather(a.tick(), b.tick())
    for step in range(1, 4):
        clock.now = T0 + step * 2 * MINUTE
        await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    assert len(await _trigger_runs(runs)) == 3
    assert (await _records(a))["every2"].fired == 3


async def test_a_crash_between_claim_and_record_starts_the_run_once(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    first = Scheduler(store, runs.registry, runs, clock)
    await first.tick()
    clock.now = T0 + 2 * MINUTE
    await first.tick()
    # As if the gateway died after starting the run and before recording it: the firing is still pending.
    record = (await _records(first))["every2"]
    key = f"/flyte/triggers/p/d/{stamp.name}/every2"
    pending = record.model_copy(update={"pending_at": record.last_fired_at, "fired": 0})
    await store.put(key, pending.model_dump_json().encode())
    restarted = Scheduler(store, runs.registry, runs, clock)
    await restarted.tick()
    assert await _trigger_runs(runs) == ["2026-12-05T10:02:30Z"]
    assert (await _records(restarted))["every2"].pending_at is None


async def test_missed_firings_fire_the_most_recent_one_only(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    await scheduler.tick()
    clock.now = T0 + 11 * MINUTE  # the firings at +2, +4, +6, +8 and +10 were missed
    await scheduler.tick()
    assert await _trigger_runs(runs) == ["2026-12-05T10:10:30Z"]
    assert (await _records(scheduler))["every2"].next_at == T0 + 12 * MINUTE


async def test_activation_fires_from_the_next_firing_on(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    await scheduler.tick()
    await scheduler.set_active("p", "d", stamp.name, "every2", False)
    clock.now = T0 + 20 * MINUTE
    activated = await scheduler.set_active("p", "d", None, "off", True)
    assert activated.active
    assert activated.next_at == T0 + 20 * MINUTE + 4 * MINUTE + 30
    await scheduler.tick()
    assert await runs.list_runs("p", "d", labels={"flyte.trigger": "off"}) == []
    clock.now = activated.next_at
    await scheduler.tick()
    assert len(await runs.list_runs("p", "d", labels={"flyte.trigger": "off"})) == 1
    assert await _trigger_runs(runs) == []  # inactive all along


async def test_a_trigger_left_out_of_the_latest_deployment_stops(store: Store, runs: Runs) -> None:
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    await scheduler.tick()
    assert set(await _records(scheduler)) == {"every2", "off"}
    await runs.registry.deploy(_deployment("v2", with_triggers=False))
    clock.now = T0 + 2 * MINUTE
    await scheduler.tick()
    assert await _records(scheduler) == {}
    assert await _trigger_runs(runs) == []


async def test_bad_activation_requests_are_clear(store: Store, runs: Runs) -> None:
    scheduler = Scheduler(store, runs.registry, runs, ManualClock())
    await scheduler.tick()
    with pytest.raises(Exception, match="no trigger nope in p/d"):
        await scheduler.set_active("p", "d", None, "nope", True)
    original = await store.get(f"/flyte/triggers/p/d/{stamp.name}/off")
    assert original is not None
    await store.put("/flyte/triggers/p/d/other.task/off", original.value)
    with pytest.raises(Exception, match="name the task"):
        await scheduler.set_active("p", "d", None, "off", True)


def test_trigger_values_check_what_they_are_given() -> None:
    with pytest.raises(ValueError, match="not a valid cron expression"):
        flyte.Cron("every day")
    with pytest.raises(ValueError, match="time zone"):
        flyte.Cron("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="at least 1"):
        flyte.FixedRate(0)
    with pytest.raises(ValueError, match="empty"):
        flyte.Trigger("", flyte.FixedRate(1))
    with pytest.raises(ValueError, match="required inputs"):

        @env.task(triggers=flyte.Trigger("t", flyte.FixedRate(1)))
        async def needs(x: int) -> None: ...

    with pytest.raises(ValueError, match="declare it datetime or str"):

        @env.task(triggers=flyte.Trigger.hourly("x"))
        async def wrong(x: int) -> None: ...

    daily = flyte.Trigger.daily()
    assert daily.inputs == {"trigger_time": flyte.TriggerTime}
    assert daily.automation == flyte.Cron("0 0 * * *")


async def test_a_firing_whose_run_cannot_start_records_why_and_the_schedule_goes_on(store: Store, runs: Runs) -> None:
    # Deployed by hand (the SDK checks a trigger's inputs against its task): the trigger omits a required input.
    spec = task_spec(stamp).model_copy(
        update={"triggers": [TriggerSpec(name="broken", automation=FixedRateSpec(interval_minutes=1))]}
    )
    request = DeployRequest(
        project="p", domain="d", env="sched_unit", version="v3", bundle_digest="0" * 64, tasks=[spec]
    )
    await runs.registry.deploy(request)
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    await scheduler.tick()
    clock.now = T0 + MINUTE
    await scheduler.tick()
    record = (await _records(scheduler))["broken"]
    assert record.last_error == "missing_input: missing inputs ['when']"
    assert (record.fired, record.pending_at, record.last_run, record.next_at) == (1, None, None, T0 + 2 * MINUTE)


async def test_two_gateways_on_one_etcd_start_each_firing_once(etcd_fresh: EtcdProcess) -> None:
    # Two clients of one etcd, each with its own registry, runs and scheduler: as two gateway replicas.
    stores = [await open_store(etcd_fresh.url) for _ in range(2)]
    services = [Runs(s, Registry(s)) for s in stores]
    try:
        await services[0].registry.deploy(_deployment("v1"))
        clock = ManualClock()
        a, b = (Scheduler(s, r.registry, r, clock) for s, r in zip(stores, services, strict=True))
        await asyncio.gather(a.tick(), b.tick())
        for step in range(1, 4):
            clock.now = T0 + step * 2 * MINUTE
            await asyncio.gather(a.tick(), b.tick())
        assert len(await _trigger_runs(services[1])) == 3
    finally:
        for runs, store in zip(services, stores, strict=True):
            await runs.close()
            await store.close()


async def test_a_redeployed_trigger_keeps_its_state_and_a_new_schedule_starts_from_now(
    store: Store, runs: Runs
) -> None:
    clock = ManualClock()
    scheduler = Scheduler(store, runs.registry, runs, clock)
    await scheduler.tick()
    await scheduler.set_active("p", "d", stamp.name, "every2", False)
    described = task_spec(stamp).model_copy(
        update={"triggers": [t.model_copy(update={"description": "new words"}) for t in task_spec(stamp).triggers]}
    )
    await runs.registry.deploy(DeployRequest(**{**_deployment("v4").model_dump(), "tasks": [described]}))
    clock.now = T0 + 30
    await scheduler.tick()
    record = (await _records(scheduler))["every2"]
    assert (record.description, record.active, record.next_at) == ("new words", False, T0 + 2 * MINUTE)
    faster = described.model_copy(
        update={
            "triggers": [
                t.model_copy(update={"automation": FixedRateSpec(interval_minutes=1)}) for t in described.triggers
            ]
        }
    )
    await runs.registry.deploy(DeployRequest(**{**_deployment("v5").model_dump(), "tasks": [faster]}))
    await scheduler.tick()
    record = (await _records(scheduler))["every2"]
    assert (record.active, record.anchor, record.next_at) == (False, T0 + 30, T0 + 30 + MINUTE)
