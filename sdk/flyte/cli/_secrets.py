"""`flyte create secret`, `flyte get secrets` and `flyte delete secret`: a project's secrets in the gateway's store.

A value goes in once (`--value`, or `--from-file` so it stays out of shell history) and never comes back out: the
gateway lists names only, and hands values only to the workers of tasks that declare them.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from urllib.parse import quote

import click

import flyte
from flyte._client import GatewayError, call_sync, client_for
from flyte._config import current_config
from flyte._wire import SecretInfo, SecretWrite

from ._create import create
from ._errors import CliError, CliUsageError
from ._inspect import get
from ._output import OutputFormat, output_option, print_listing

_PROJECT = click.option("--project", default=None, help="The project (default: the configured one).")


def _project(project: str | None) -> str:
    try:
        flyte.init_from_config()
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return project or current_config().project


def _call(method: str, path: str, project: str, body: SecretWrite | None = None) -> object:
    try:
        return call_sync(client_for().request(method, path, json_body=body, params={"project": project}))
    except GatewayError as exc:
        raise CliError(str(exc)) from None


@click.command("secret")
@click.argument("name")
@click.option("--value", default=None, help="The secret's value.")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the value from this file (keeps it out of shell history).",
)
@_PROJECT
def create_secret(name: str, value: str | None, from_file: Path | None, project: str | None) -> None:
    """Set secret NAME of a project (a new value replaces the old one)."""
    if (value is None) == (from_file is None):
        raise CliUsageError("give the value with exactly one of --value or --from-file")
    if from_file is not None:
        try:
            value = from_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {from_file}: {exc}") from None
    assert value is not None
    where = _project(project)
    _call("PUT", f"/api/v1/secrets/{quote(name, safe='')}", where, SecretWrite(value=value))
    click.echo(f"secret {name} set in project {where}")


@click.command("secrets")
@_PROJECT
@output_option
def get_secrets(project: str | None, output: OutputFormat) -> None:
    """The names of a project's secrets (values are never shown)."""
    where = _project(project)
    answer = _call("GET", "/api/v1/secrets", where)
    infos = [SecretInfo.model_validate(item) for item in answer] if isinstance(answer, list) else []
    rows = [[i.name, datetime.datetime.fromtimestamp(i.updated_at).strftime("%Y-%m-%d %H:%M:%S")] for i in infos]
    print_listing(f"secrets of {where}", ["secret", "updated"], rows, output, objects=infos)


@click.group("delete")
def delete() -> None:
    """Delete secrets."""


@delete.command("secret")
@click.argument("name")
@_PROJECT
def delete_secret(name: str, project: str | None) -> None:
    """Delete secret NAME of a project."""
    where = _project(project)
    _call("DELETE", f"/api/v1/secrets/{quote(name, safe='')}", where)
    click.echo(f"secret {name} deleted from project {where}")


get.add_command(get_secrets)
create.add_command(create_secret)
