"""The notification rules as values: checked when made, turned into their wire form when a run is created."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._unimplemented import not_implemented
from .._wire import EmailRule, NotificationRule, NotifyPhase, SlackRule, TeamsRule, WebhookRule

_PHASES: dict[str, NotifyPhase] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "aborted": "aborted",
    "timed_out": "timed_out",
}
_DEFAULT_TEXT = (
    "Run: {{.Run.Name}}\nProject/Domain: {{.Run.Project}}/{{.Run.Domain}}\nPhase: {{.Phase}}\nError: {{.Error}}\n"
)


def _phase(value: object) -> NotifyPhase:
    """A phase given as text ("failed", "FAILED") or as an enum member (Flyte 2's `ActionPhase.FAILED`)."""
    text = value if isinstance(value, str) else getattr(value, "name", None) or getattr(value, "value", None)
    key = str(text).lower().removeprefix("action_phase_")
    if key not in _PHASES:
        raise ValueError(f"notification on_phase={value!r} must be one of succeeded, failed, aborted, timed_out")
    return _PHASES[key]


@dataclass(frozen=True, kw_only=True)
class Notification:
    """A rule: send something when the run ends in one of `on_phase` (one phase or several)."""

    on_phase: Any

    def __post_init__(self) -> None:
        phases = self.on_phase if isinstance(self.on_phase, list | tuple | set | frozenset) else (self.on_phase,)
        if not phases:
            raise ValueError("At least one phase must be specified")
        object.__setattr__(self, "on_phase", tuple(dict.fromkeys(_phase(p) for p in phases)))

    def to_wire(self) -> NotificationRule:
        raise NotImplementedError(type(self).__name__)


@dataclass(frozen=True, kw_only=True)
class Email(Notification):
    """An email to `recipients` (and `cc`, `bcc`), sent through the gateway's SMTP settings."""

    recipients: Sequence[str]
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str = "Run {{.Run.Name}} {{.Phase}}"
    body: str = _DEFAULT_TEXT
    html_body: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.recipients, str):
            object.__setattr__(self, "recipients", (self.recipients,))
        if not self.recipients:
            raise ValueError("At least one recipient must be specified")
        self.to_wire()  # a malformed address fails here, not when the run is created

    def to_wire(self) -> NotificationRule:
        return EmailRule(
            on_phase=list(self.on_phase),
            recipients=list(self.recipients),
            cc=list(self.cc),
            bcc=list(self.bcc),
            subject=self.subject,
            body=self.body,
            html_body=self.html_body,
        )


@dataclass(frozen=True, kw_only=True)
class Slack(Notification):
    """A Slack incoming-webhook message: `message`, or Block Kit `blocks`."""

    webhook_url: str
    message: str | None = None
    blocks: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.message is None and self.blocks is None:
            default = "Run: {{.Run.Name}} finished with phase {{.Phase}}\n | {{.Run.Project}}/{{.Run.Domain}}\n"
            object.__setattr__(self, "message", default)
        self.to_wire()

    def to_wire(self) -> NotificationRule:
        blocks = [dict(b) for b in self.blocks] if self.blocks is not None else None
        return SlackRule(
            on_phase=list(self.on_phase), webhook_url=self.webhook_url, message=self.message, blocks=blocks
        )


@dataclass(frozen=True, kw_only=True)
class Teams(Notification):
    """A Microsoft Teams incoming-webhook message: `title` and `message`, or an Adaptive `card`."""

    webhook_url: str
    title: str = "Run {{.Run.Name}} {{.Phase}}"
    message: str | None = None
    card: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.message is None and self.card is None:
            object.__setattr__(self, "message", _DEFAULT_TEXT)
        self.to_wire()

    def to_wire(self) -> NotificationRule:
        card = dict(self.card) if self.card is not None else None
        return TeamsRule(
            on_phase=list(self.on_phase),
            webhook_url=self.webhook_url,
            title=self.title,
            message=self.message,
            card=card,
        )


@dataclass(frozen=True, kw_only=True)
class Webhook(Notification):
    """Any HTTP request: `url`, `method`, `headers` and a JSON `body`, every string of them a template."""

    url: str
    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    headers: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.body is None:
            default = {
                "run": "{{.Run.Name}}",
                "project": "{{.Run.Project}}",
                "domain": "{{.Run.Domain}}",
                "phase": "{{.Phase}}",
                "error": "{{.Error}}",
            }
            object.__setattr__(self, "body", default)
        self.to_wire()

    def to_wire(self) -> NotificationRule:
        return WebhookRule(
            on_phase=list(self.on_phase),
            url=self.url,
            method=self.method,
            headers=dict(self.headers or {}),
            body=dict(self.body or {}),
        )


@dataclass(frozen=True)
class NamedRule:
    """Flyte 2's reference to an admin-defined rule: there are no named rules here."""

    name: str

    def __post_init__(self) -> None:
        raise not_implemented("flyte.notify.NamedRule", "named notification rules (give the rule itself)")


@dataclass(frozen=True, kw_only=True)
class NamedDelivery(Notification):
    """Flyte 2's reference to an admin-defined channel: there are no named channels here."""

    name: str

    def __post_init__(self) -> None:
        raise not_implemented("flyte.notify.NamedDelivery", "named delivery channels (give the channel itself)")


def rules_to_wire(notifications: object) -> list[NotificationRule]:
    """`notifications=` as Flyte 2 takes it (one rule or several) in wire form, or a ValueError naming the bad one."""
    if notifications is None:
        return []
    items: Iterable[object] = (
        (notifications,) if isinstance(notifications, Notification | NamedRule) else notifications  # type: ignore[assignment]
    )
    rules = []
    for item in items:
        if not isinstance(item, Notification):
            raise ValueError(f"notifications= takes flyte.notify rules (Email, Slack, Teams, Webhook), not {item!r}")
        rules.append(item.to_wire())
    return rules
