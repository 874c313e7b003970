"""`remote.Trigger`: the triggers (schedules) the gateway runs, as Flyte 2's `flyte.remote.Trigger` reads and
switches them. Triggers are created and changed by deploying their tasks (`@env.task(triggers=...)`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from .._config import current_config
from .._unimplemented import not_implemented
from .._wire import CronSpec, FixedRateSpec, TriggerRecord


@dataclass(frozen=True)
class Trigger:
    record: TriggerRecord

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def task_name(self) -> str:
        return self.record.task

    @property
    def is_active(self) -> bool:
        return self.record.active

    @property
    def automation(self) -> CronSpec | FixedRateSpec:
        return self.record.automation

    @property
    def next_at(self) -> float | None:
        """The next firing time (epoch seconds) while active."""
        return self.record.next_at if self.record.active else None

    @property
    def last_run(self) -> str | None:
        return self.record.last_run

    @classmethod
    def listall(
        cls, task_name: str | None = None, *, project: str | None = None, domain: str | None = None
    ) -> list[Trigger]:
        """The triggers of the latest deployed tasks (of `task_name` only, when given)."""
        answer = _call("GET", "/api/v1/triggers", project, domain)
        records = [TriggerRecord.model_validate(item) for item in answer] if isinstance(answer, list) else []
        return [cls(r) for r in records if task_name is None or r.task == task_name]

    @classmethod
    def get(cls, *, name: str, task_name: str, project: str | None = None, domain: str | None = None) -> Trigger:
        for trigger in cls.listall(task_name, project=project, domain=domain):
            if trigger.name == name:
                return trigger
        raise LookupError(f"task {task_name} has no trigger {name}; `flyte get triggers` lists them")

    @classmethod
    def update(
        cls, name: str, task_name: str, active: bool, *, project: str | None = None, domain: str | None = None
    ) -> Trigger:
        """Activate (it fires from its next time on) or pause a trigger."""
        verb = "activate" if active else "deactivate"
        path = f"/api/v1/triggers/{quote(name, safe='')}/{verb}"
        return cls(TriggerRecord.model_validate(_call("POST", path, project, domain, task=task_name)))

    @classmethod
    def create(cls, *args: object, **kwargs: object) -> Trigger:
        raise not_implemented("flyte.remote.Trigger.create", "creating triggers apart from a deployment")

    @classmethod
    def delete(cls, *args: object, **kwargs: object) -> None:
        raise not_implemented("flyte.remote.Trigger.delete", "deleting triggers apart from a deployment")


def _call(method: str, path: str, project: str | None, domain: str | None, **extra: str) -> object:
    config = current_config()
    if not config.is_remote:
        raise RuntimeError("flyte.remote.Trigger needs a gateway: triggers are run by the gateway, not locally")
    from .._client import call_sync, client_for

    params = {"project": project or config.project, "domain": domain or config.domain, **extra}
    return call_sync(client_for().request(method, path, params=params))
