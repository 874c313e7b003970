"""`flyte get triggers` and `flyte update trigger NAME TASK --activate|--deactivate`, as Flyte 2's CLI names them.

Triggers are deployed with their tasks (`@env.task(triggers=...)`); the gateway's scheduler fires them
(docs/schedules.md). These commands show their state and switch them on and off.
"""

from __future__ import annotations

import datetime
from urllib.parse import quote

import click

import flyte
from flyte._client import GatewayError, call_sync, client_for
from flyte._config import current_config
from flyte._wire import CronSpec, TriggerRecord

from ._errors import CliError
from ._inspect import get
from ._output import OutputFormat, output_option, print_listing

_PROJECT = click.option("--project", default=None, help="The project (default: the configured one).")
_DOMAIN = click.option("--domain", default=None, help="The domain (default: the configured one).")


def _scope(project: str | None, domain: str | None) -> dict[str, str]:
    try:
        flyte.init_from_config()
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    config = current_config()
    return {"project": project or config.project, "domain": domain or config.domain}


def _call(method: str, path: str, params: dict[str, str]) -> object:
    try:
        return call_sync(client_for().request(method, path, params=params))
    except GatewayError as exc:
        raise CliError(str(exc)) from None


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _schedule(record: TriggerRecord) -> str:
    automation = record.automation
    if isinstance(automation, CronSpec):
        zone = "" if automation.timezone == "UTC" else f" ({automation.timezone})"
        return f"cron {automation.expression}{zone}"
    return f"every {automation.interval_minutes} min"


@click.command("triggers")
@click.argument("task_name", required=False)
@_PROJECT
@_DOMAIN
@output_option
def get_triggers(task_name: str | None, project: str | None, domain: str | None, output: OutputFormat) -> None:
    """The triggers of the latest deployed tasks (of TASK_NAME only, when given), with their state."""
    scope = _scope(project, domain)
    answer = _call("GET", "/api/v1/triggers", scope)
    records = [TriggerRecord.model_validate(item) for item in answer] if isinstance(answer, list) else []
    records = [r for r in records if task_name is None or r.task == task_name]
    rows = [
        [
            r.name,
            r.task,
            _schedule(r),
            "active" if r.active else "inactive",
            _when(r.next_at) if r.active else "-",
            _when(r.last_fired_at),
            r.last_run or "-",
            r.last_error or "",
        ]
        for r in records
    ]
    columns = ["trigger", "task", "schedule", "state", "next", "last fired", "last run", "error"]
    print_listing(f"triggers of {scope['project']}/{scope['domain']}", columns, rows, output, objects=records)


@click.group("update")
def update() -> None:
    """Activate or deactivate triggers."""


@update.command("trigger")
@click.argument("name")
@click.argument("task_name")
@click.option("--activate/--deactivate", required=True, help="Activate or deactivate the trigger.")
@_PROJECT
@_DOMAIN
def update_trigger(name: str, task_name: str, activate: bool, project: str | None, domain: str | None) -> None:
    """Activate or deactivate trigger NAME of task TASK_NAME; an activated trigger fires from its next time on."""
    params = {**_scope(project, domain), "task": task_name}
    verb = "activate" if activate else "deactivate"
    answer = _call("POST", f"/api/v1/triggers/{quote(name, safe='')}/{verb}", params)
    record = TriggerRecord.model_validate(answer)
    state = f"active, next firing {_when(record.next_at)}" if record.active else "inactive"
    click.echo(f"trigger {record.name} of {record.task} is {state}")


get.add_command(get_triggers)
get.add_command(get_triggers, "trigger")  # Flyte 2's spelling
