"""Schedules and notifications: a task's triggers (deployed with it, fired by the gateway's scheduler), a trigger's
state, and the notification rules of runs with their deliveries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ._base import Label, Name, TaskName, Text, WireModel
from ._values import WireValue

NotifyPhase = Literal["succeeded", "failed", "aborted", "timed_out"]
"""The run phases a notification rule may name (Flyte 2's terminal phases; `timed_out` is a run that failed by
its timeout)."""
Url = Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
Template = Annotated[str, StringConstraints(max_length=65_536)]


class _Rule(WireModel):
    on_phase: list[NotifyPhase] = Field(min_length=1, max_length=4)


class EmailRule(_Rule):
    kind: Literal["email"] = "email"
    recipients: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        min_length=1, max_length=100
    )
    cc: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(default_factory=list)
    bcc: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(default_factory=list)
    subject: Template
    body: Template
    html_body: Template | None = None


class SlackRule(_Rule):
    kind: Literal["slack"] = "slack"
    webhook_url: Url
    message: Template | None = None
    blocks: list[dict[str, Any]] | None = None


class TeamsRule(_Rule):
    kind: Literal["teams"] = "teams"
    webhook_url: Url
    title: Template
    message: Template | None = None
    card: dict[str, Any] | None = None


class WebhookRule(_Rule):
    kind: Literal["webhook"] = "webhook"
    url: Url
    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    headers: dict[str, Template] = Field(default_factory=dict, max_length=64)
    body: dict[str, Any] | None = None


NotificationRule = Annotated[EmailRule | SlackRule | TeamsRule | WebhookRule, Field(discriminator="kind")]
"""`flyte.notify.Email/Slack/Teams/Webhook`: sent by the gateway when the run ends in one of `on_phase`."""


class NotificationDelivery(WireModel):
    """One rule's delivery for a run: its state, kept in the store and answered by the API."""

    rule: int
    """The rule's index among the run's rules."""
    kind: Literal["email", "slack", "teams", "webhook"]
    target: Annotated[str, StringConstraints(max_length=1024)]
    """Where it goes, without secrets: the recipients, or the webhook's scheme and host."""
    phase: NotifyPhase
    status: Literal["pending", "delivered", "failed"]
    attempts: int = 0
    error: Text | None = None
    delivered_at: float | None = None


class RunNotifications(WireModel):
    """`GET /api/v1/runs/{run}/notifications`: the deliveries of a run's notification rules."""

    run: str
    deliveries: list[NotificationDelivery] = Field(default_factory=list)


TriggerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]


class CronSpec(WireModel):
    """`flyte.Cron`: fire at the times a five-field cron expression names, in `timezone` (an IANA name)."""

    kind: Literal["cron"] = "cron"
    expression: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class FixedRateSpec(WireModel):
    """`flyte.FixedRate`: fire every `interval_minutes`, counted from `start_time` (epoch seconds) when given,
    else from when the gateway first saw the trigger."""

    kind: Literal["fixed_rate"] = "fixed_rate"
    interval_minutes: int = Field(ge=1, le=366 * 24 * 60)
    start_time: float | None = None


class TriggerSpec(WireModel):
    """A `flyte.Trigger` on a task, deployed with the task's version: the gateway starts the task's runs by it."""

    name: TriggerName
    automation: Annotated[CronSpec | FixedRateSpec, Field(discriminator="kind")]
    description: Text = ""
    auto_activate: bool = True
    inputs: dict[str, WireValue] = Field(default_factory=dict, max_length=256)
    """Fixed inputs of every run it starts, encoded at deploy time."""
    trigger_time_input: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None
    """The input that receives the firing time (`flyte.TriggerTime`)."""
    overwrite_cache: bool = False
    labels: dict[Label, Label] = Field(default_factory=dict, max_length=64)
    notifications: list[NotificationRule] = Field(default_factory=list, max_length=16)
    """Rules for every run it starts (Flyte 2's `Trigger(notifications=)`)."""


class TriggerRecord(WireModel):
    """A trigger's state in the store (`/flyte/triggers/...`) and in the API: where its firings are, and whether
    it fires. Every change is a compare-and-swap on this record, so one firing is claimed by one scheduler."""

    project: Name
    domain: Name
    task: TaskName
    name: TriggerName
    automation: Annotated[CronSpec | FixedRateSpec, Field(discriminator="kind")]
    description: Text = ""
    active: bool
    anchor: float
    """When the gateway first saw this automation: a `FixedRate` without `start_time` counts from it."""
    next_at: float
    """The next firing time (epoch seconds)."""
    pending_at: float | None = None
    """A claimed firing whose run is not yet recorded as started: finished (idempotently) by the next pass."""
    last_fired_at: float | None = None
    last_run: Name | None = None
    last_error: Text | None = None
    fired: int = 0
    automation_digest: Annotated[str, StringConstraints(max_length=64)] = ""
