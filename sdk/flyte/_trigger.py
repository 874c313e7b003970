"""Schedules: `flyte.Trigger` with a `flyte.Cron` or `flyte.FixedRate` automation, on `@env.task(triggers=...)`.

A trigger is deployed with its task's version (`TaskSpec.triggers`); the gateway's scheduler starts the task's runs
by the latest deployed version's triggers (gateway/_scheduler.py, docs/schedules.md). Here the values are checked
when they are made, and turned into their wire form when the task is deployed.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ._wire import CronSpec, FixedRateSpec, TriggerSpec, WireValue
from .notify import rules_to_wire

if TYPE_CHECKING:
    from ._task import TaskTemplate

__all__ = ["Cron", "FixedRate", "Trigger", "TriggerTime", "trigger_specs"]


class _TriggerTime:
    """Stands for a trigger's firing time where a trigger's inputs name it (Flyte 2's `flyte.TriggerTime`)."""

    def __repr__(self) -> str:
        return "flyte.TriggerTime"


TriggerTime = _TriggerTime()

_TIME_TYPES = ("datetime", "str")
"""The input types a firing time is given as: a timezone-aware UTC `datetime`, or its ISO 8601 text."""


@dataclass(frozen=True)
class Cron:
    """Fire at the times a five-field cron expression names (minute hour day-of-month month day-of-week; names
    like `mon`/`jan` and `@daily`-style macros too), read in `timezone` (an IANA name; UTC by default)."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not croniter.is_valid(self.expression):
            raise ValueError(f"Cron: expression={self.expression!r} is not a valid cron expression")
        if len(self.expression.split()) > 5:
            raise ValueError(f"Cron: expression={self.expression!r} has more than five fields (no seconds or years)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"Cron: timezone={self.timezone!r} is not a known IANA time zone") from None

    def __str__(self) -> str:
        return f"Cron Trigger: {self.expression}"

    def to_spec(self) -> CronSpec:
        return CronSpec(expression=self.expression, timezone=self.timezone)


@dataclass(frozen=True)
class FixedRate:
    """Fire every `interval_minutes`, counted from `start_time` when given (a past time is fine: the firings stay
    on its grid), else from when the gateway first sees the trigger (the first firing is one interval later)."""

    interval_minutes: int
    start_time: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.interval_minutes, bool) or not isinstance(self.interval_minutes, int):
            raise ValueError(f"FixedRate: interval_minutes={self.interval_minutes!r} must be an int")
        if self.interval_minutes < 1:
            raise ValueError(f"FixedRate: interval_minutes={self.interval_minutes!r} must be at least 1")
        if self.start_time is not None and not isinstance(self.start_time, datetime.datetime):
            raise ValueError(f"FixedRate: start_time={self.start_time!r} must be a datetime")

    def __str__(self) -> str:
        return f"FixedRate Trigger: every {self.interval_minutes} minutes"

    def to_spec(self) -> FixedRateSpec:
        start = None
        if self.start_time is not None:
            when = self.start_time
            # A naive start time is UTC, as the gateway keeps every time.
            start = (when if when.tzinfo else when.replace(tzinfo=datetime.UTC)).timestamp()
        return FixedRateSpec(interval_minutes=self.interval_minutes, start_time=start)


@dataclass(frozen=True)
class Trigger:
    """A schedule for a task: `@env.task(triggers=flyte.Trigger("nightly", flyte.Cron("0 2 * * *")))`.

    `inputs` are the runs' inputs; the value `flyte.TriggerTime` names the input that receives the firing time.
    `auto_activate=False` deploys it inactive (`flyte trigger activate`). `env_vars`, `interruptible`, `queue` and
    `annotations` are accepted for Flyte 2 programs and have no effect here; `labels` label the runs.
    """

    name: str
    automation: Cron | FixedRate
    description: str = ""
    auto_activate: bool = True
    inputs: dict[str, Any] | None = None
    env_vars: dict[str, str] | None = None
    interruptible: bool | None = None
    overwrite_cache: bool = False
    queue: str | None = None
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    notifications: Any = None
    """`flyte.notify` rules for every run the trigger starts."""

    def __post_init__(self) -> None:
        rules_to_wire(self.notifications)  # a bad rule fails here
        if not self.name:
            raise ValueError("Trigger name cannot be empty")
        if not isinstance(self.automation, Cron | FixedRate):
            raise ValueError(f"Trigger {self.name!r}: automation={self.automation!r} must be a flyte.Cron or FixedRate")

    @classmethod
    def _preset(cls, expression: str, key: str, name: str, description: str, **kwargs: Any) -> Trigger:
        inputs = {key: TriggerTime, **(kwargs.pop("inputs", None) or {})}
        return cls(name=name, automation=Cron(expression), description=description, inputs=inputs, **kwargs)

    @classmethod
    def minutely(
        cls, trigger_time_input_key: str = "trigger_time", *, name: str = "minutely", **kwargs: Any
    ) -> Trigger:
        return cls._preset("* * * * *", trigger_time_input_key, name, "A trigger that runs every minute", **kwargs)

    @classmethod
    def hourly(cls, trigger_time_input_key: str = "trigger_time", *, name: str = "hourly", **kwargs: Any) -> Trigger:
        return cls._preset("0 * * * *", trigger_time_input_key, name, "A trigger that runs every hour", **kwargs)

    @classmethod
    def daily(cls, trigger_time_input_key: str = "trigger_time", *, name: str = "daily", **kwargs: Any) -> Trigger:
        return cls._preset("0 0 * * *", trigger_time_input_key, name, "A trigger that runs daily at midnight", **kwargs)

    @classmethod
    def weekly(cls, trigger_time_input_key: str = "trigger_time", *, name: str = "weekly", **kwargs: Any) -> Trigger:
        what = "A trigger that runs weekly on Sundays at midnight"
        return cls._preset("0 0 * * 0", trigger_time_input_key, name, what, **kwargs)

    @classmethod
    def monthly(cls, trigger_time_input_key: str = "trigger_time", *, name: str = "monthly", **kwargs: Any) -> Trigger:
        what = "A trigger that runs monthly on the 1st at midnight"
        return cls._preset("0 0 1 * *", trigger_time_input_key, name, what, **kwargs)

    def to_spec(self, task: TaskTemplate[..., Any]) -> TriggerSpec:
        """The wire form for `task`: the inputs checked against its parameters and encoded now."""
        where = f"trigger {self.name!r} of task {task.name}"
        time_input: str | None = None
        values: dict[str, WireValue] = {}
        for key, value in (self.inputs or {}).items():
            param = task.interface.by_name.get(key)
            if param is None:
                raise ValueError(f"{where}: input {key!r} is not a parameter of the task")
            if value is TriggerTime:
                type_name = getattr(param.annotation, "__name__", str(param.annotation))
                if type_name not in _TIME_TYPES:
                    raise ValueError(f"{where}: input {key!r} takes the trigger time; declare it datetime or str")
                time_input = key
                continue
            encoded = param.codec.encode(value)
            if encoded.payload is None:
                raise ValueError(f"{where}: input {key!r} is too large for a trigger (pass a flyte.io.File)")
            values[key] = WireValue.from_encoded(encoded)
        given = {*values, *([time_input] if time_input else [])}
        missing = [p.name for p in task.interface.parameters if p.required and p.name not in given]
        if missing:
            raise ValueError(f"{where}: the task's required inputs {missing} have no value in the trigger's inputs")
        return TriggerSpec(
            name=self.name,
            automation=self.automation.to_spec(),
            description=self.description,
            auto_activate=self.auto_activate,
            inputs=values,
            trigger_time_input=time_input,
            overwrite_cache=self.overwrite_cache,
            labels=dict(self.labels or {}),
            notifications=rules_to_wire(self.notifications),
        )


def normalize_triggers(triggers: Trigger | Iterable[Trigger] | None) -> tuple[Trigger, ...]:
    """`triggers=` as Flyte 2 takes it: one trigger or a sequence of them, names unique per task."""
    items = (triggers,) if isinstance(triggers, Trigger) else tuple(triggers or ())
    for item in items:
        if not isinstance(item, Trigger):
            raise ValueError(f"task: triggers= takes flyte.Trigger values, not {item!r}")
    names = [t.name for t in items]
    if len(set(names)) != len(names):
        raise ValueError(f"task: trigger names must be unique per task, got {names}")
    return items


def trigger_specs(task: TaskTemplate[..., Any]) -> list[TriggerSpec]:
    return [trigger.to_spec(task) for trigger in task.settings.triggers]
