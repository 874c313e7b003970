"""`flyte signal condition RUN NAME VALUE`: give a waiting condition (`flyte.new_condition`) its value, and
`flyte get conditions RUN`: a run's conditions."""

from __future__ import annotations

import click

from ._errors import CliError
from ._inspect import _init, _when, get


def _gateway() -> None:
    _init()
    from flyte._config import current_config

    if not current_config().is_remote:
        raise CliError("conditions are signalled through a gateway; a local run asks for the value on its terminal")


@click.group("signal")
def signal() -> None:
    """Signal a run's waiting conditions."""


@signal.command("condition")
@click.argument("run_name", metavar="RUN")
@click.argument("name", metavar="NAME")
@click.argument("value", metavar="VALUE")
@click.option("--action", "action", default=None, help="The action whose condition it is, when several have NAME.")
def signal_condition(run_name: str, name: str, value: str, action: str | None) -> None:
    """Give condition NAME of RUN its VALUE, read as the condition's type (true/false, a number, text)."""
    _gateway()
    from flyte._client import GatewayError
    from flyte.remote import Condition

    try:
        condition = Condition.get(name, run_name, action)
        if condition is None:
            raise CliError(f"run {run_name} has no condition {name!r} (yet); `flyte get conditions {run_name}`")
        done = condition.signal(value)
    except (GatewayError, LookupError, ValueError) as exc:
        raise CliError(str(exc)) from None
    click.echo(f"signalled {run_name}/{done.action_name} condition {done.name} = {done.value!r}")


@get.command("conditions")
@click.argument("run_name", metavar="RUN")
def get_conditions(run_name: str) -> None:
    """The conditions of RUN: waiting, signalled (with the value) or timed out."""
    _gateway()
    from flyte._client import GatewayError
    from flyte.remote import Condition

    try:
        conditions = list(Condition.listall(run_name))
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    if not conditions:
        click.echo(f"run {run_name} has no conditions")
    for c in conditions:
        value = f" = {c.value!r}" if c.phase == "signalled" else ""
        due = f", times out {_when(c.deadline)}" if c.deadline is not None and c.phase == "waiting" else ""
        click.echo(f"{c.action_name}  {c.name} ({c.data_type}) {c.phase}{value}{due}: {c.prompt}")
