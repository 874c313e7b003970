"""The `flyte` command group; every subcommand is registered here, one line each."""

from __future__ import annotations

import click

import flyte

from ._agent import agent
from ._build import build
from ._create import create
from ._gateway import gateway
from ._inspect import abort, deploy, get
from ._placement import cluster, get_clusters, get_placement, policy
from ._rig import rig
from ._run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(flyte.__version__, "--version", prog_name="flyte", message="%(prog)s, version %(version)s")
def main() -> None:
    """Flyte Federation: run Flyte 2 tasks locally or across clusters."""


main.add_command(run)
main.add_command(build)
main.add_command(create)
main.add_command(deploy)
main.add_command(get)
main.add_command(abort)
main.add_command(gateway)
main.add_command(agent)
main.add_command(rig)
main.add_command(policy)
main.add_command(cluster)
get.add_command(get_placement)
get.add_command(get_clusters)
