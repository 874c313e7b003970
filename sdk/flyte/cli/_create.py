"""`flyte create ...`: commands that write new files, for now the SDK config (`flyte create config`)."""

from __future__ import annotations

from pathlib import Path

import click

from flyte._config import write_config

from ._errors import CliError, CliUsageError

DEFAULT_CONFIG_PATH = Path(".flyte") / "config.yaml"


@click.group()
def create() -> None:
    """Create configuration files and secrets."""


@create.command("config")
@click.option(
    "--endpoint",
    required=True,
    metavar="URL",
    help="The gateway: https://host[:port], http://host:port or dns:///host:port.",
)
@click.option("--project", default=None, help="Default project for runs and deployments.")
@click.option("--domain", default=None, help="Default domain for runs and deployments.")
@click.option("--insecure", is_flag=True, help="Talk plain http to an endpoint given without a scheme.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="Where to write the config.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def create_config(
    endpoint: str, project: str | None, domain: str | None, insecure: bool, output: Path, force: bool
) -> None:
    """Write a config file that points the SDK and the CLI at a gateway."""
    try:
        written = write_config(output, endpoint, project, domain, insecure, force=force)
    except FileExistsError:
        raise CliError(f"config file {output} already exists; pass --force to overwrite it") from None
    except ValueError as exc:
        raise CliUsageError(f"invalid --endpoint {endpoint!r}: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"Wrote {written.resolve()}")
