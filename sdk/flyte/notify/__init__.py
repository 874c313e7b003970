"""Flyte 2's `flyte.notify`: messages the gateway sends when a run ends in a phase a rule names.

```python
flyte.with_runcontext(
    notifications=[
        flyte.notify.Slack(on_phase="failed", webhook_url="https://hooks.slack.com/services/..."),
        flyte.notify.Email(on_phase=("succeeded", "failed"), recipients=["team@example.com"]),
    ]
).run(main, x=1)
```

Rules also go on a `flyte.Trigger(notifications=...)` for every run it starts. docs/schedules.md (Notifications)
says how the gateway sends and records them.
"""

from ._notifiers import Email, NamedDelivery, NamedRule, Notification, Slack, Teams, Webhook, rules_to_wire

__all__ = ["Email", "NamedDelivery", "NamedRule", "Notification", "Slack", "Teams", "Webhook", "rules_to_wire"]
