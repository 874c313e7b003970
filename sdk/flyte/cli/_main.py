"""The `flyte` command group; every subcommand is registered here, one line each.

Subcommands are imported only when one runs: `flyte --version` and `flyte --help` import click and nothing else
of weight (the commands' modules bring in pydantic, the SDK's runtime and the user's code).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from .._env import EnvSettingError
from ._errors import CliUsageError

COMMANDS: dict[str, tuple[str, str]] = {
    "abort": ("._inspect", "Abort runs."),
    "agent": ("._agent", "Run a cluster's agent."),
    "build": ("._build", "Write (and build) the image of an environment."),
    "cluster": ("._placement", "Cordon, drain and uncordon clusters."),
    "create": ("._create", "Create configuration files and secrets."),
    "delete": ("._secrets", "Delete secrets."),
    "deploy": ("._inspect", "Deploy environment ENV from FILE, with the environments it depends on."),
    "gateway": ("._gateway", "Run and administer a gateway."),
    "get": ("._inspect", "Show deployed tasks, runs and actions."),
    "policy": ("._placement", "The gateway's placement policy."),
    "rig": ("._rig", "A local multi-cluster rig: a gateway and agents as processes on this machine."),
    "run": ("._run", "Run a task from a Python file."),
    "signal": ("._signal", "Signal a run's waiting conditions."),
    "update": ("._triggers", "Activate or deactivate triggers."),
}
"""Each subcommand: the module that defines it (as an attribute of its own name), and its help as `--help` lists
it. A test checks the help against the command's own."""

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "create": ("._secrets",),
    "get": ("._placement", "._secrets", "._signal", "._triggers"),
}
"""Modules that add subcommands to a group defined elsewhere (`flyte get placement`): imported with the group."""


class LazyGroup(click.Group):
    """A group that imports a subcommand's module when the subcommand is looked up, and lists them all without."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module = importlib.import_module(self.lazy[cmd_name][0], __package__)
            for extension in EXTENSIONS.get(cmd_name, ()):
                importlib.import_module(extension, __package__)
            self.add_command(getattr(module, cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnvSettingError as error:
            # A setting read as its module loads (`FLYTE_LEASE_TTL=10s`): one line that names it, not a traceback.
            raise CliUsageError(str(error)) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            # An unloaded command is described by a stand-in with its help, shortened by click's own rule.
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import flyte

    click.echo(f"flyte, version {flyte.__version__}")
    ctx.exit()


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Flyte Federation: run Flyte 2 tasks locally or across clusters."""
