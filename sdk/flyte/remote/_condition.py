"""`remote.Condition`: a run's conditions (`flyte.new_condition`), listed and signalled through the gateway."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._config import current_config
from .._wire import ConditionRecord, ConditionSignal


def _need_gateway() -> None:
    if not current_config().is_remote:
        raise RuntimeError("conditions are signalled through a gateway; a local run asks for the value on its terminal")


@dataclass(frozen=True)
class Condition:
    """A condition of a run, as the gateway keeps it (`phase`: waiting, signalled or timed_out)."""

    run_name: str
    action_name: str
    name: str
    prompt: str
    prompt_type: str
    description: str
    data_type: str
    phase: str
    value: bool | int | float | str | None
    created_at: float
    deadline: float | None

    @classmethod
    def _from(cls, run_name: str, record: ConditionRecord) -> Condition:
        return cls(
            run_name,
            record.action,
            record.name,
            record.prompt,
            record.prompt_type,
            record.description,
            record.data_type,
            record.state,
            record.value,
            record.created_at,
            record.deadline,
        )

    @classmethod
    def listall(cls, run_name: str) -> Iterator[Condition]:
        """The run's conditions, in the order of their actions and names."""
        _need_gateway()
        from .._client import call_sync, client_for

        client = client_for()
        path = f"/api/v1/runs/{urllib.parse.quote(run_name, safe='')}/conditions"
        answer = call_sync(client.request("GET", path, params=client.run_params()))
        for item in answer:
            yield cls._from(run_name, ConditionRecord.model_validate(item))

    @classmethod
    def get(cls, name: str, run_name: str, action_name: str | None = None) -> Condition | None:
        """The run's condition of that name (of `action_name`, when several actions made one), or None (yet)."""
        found = [c for c in cls.listall(run_name) if c.name == name and action_name in (None, c.action_name)]
        if len(found) > 1:
            actions = ", ".join(c.action_name for c in found)
            raise LookupError(f"actions {actions} of run {run_name} each have a condition {name!r}: give action_name")
        return found[0] if found else None

    def signal(self, value: Any) -> Condition:
        """Give the condition its value. Text is read as the condition's type ("true", "3", "2.5"), so a form or a
        command line can pass what it has; the gateway refuses a value of another type (`GatewayError`, 400)."""
        from .._condition import parse_text

        if isinstance(value, str) and self.data_type != "str":
            value = parse_text(self.name, self.data_type, value)
        return signal(self.run_name, self.name, value, self.action_name)


def signal(run_name: str, name: str, value: bool | int | float | str, action_name: str | None = None) -> Condition:
    """Signal a run's condition by name; the gateway checks the value's type against the condition's."""
    _need_gateway()
    from .._client import call_sync, client_for

    client = client_for()
    run = urllib.parse.quote(run_name, safe="")
    path = f"/api/v1/runs/{run}/conditions/{urllib.parse.quote(name, safe='')}/signal"
    body = ConditionSignal(value=value, action=action_name)
    answer = call_sync(client.request("POST", path, json_body=body, params=client.run_params()))
    return Condition._from(run_name, ConditionRecord.model_validate(answer))
