"""`flyte build FILE ENV`: write the Dockerfile and build context of an environment's image (and build it)."""

from __future__ import annotations

from pathlib import Path

import click

from flyte._config import current_config
from flyte._environment import TaskEnvironment
from flyte._image import Image
from flyte._image_build import docker_build, image_tag, write_build_context
from flyte.errors import ImageBuildError

from ._errors import CliError, CliUsageError
from ._load import load_module


@click.command(short_help="Write (and build) the image of an environment.")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the Dockerfile and context (default: ./flyte-build/<env>-<identifier>).",
)
@click.option("--docker", "use_docker", is_flag=True, help="Also run `docker build` on the context.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("env_name", metavar="ENV")
def build(file: Path, env_name: str, output: Path | None, use_docker: bool) -> None:
    """Write the Dockerfile and build context of environment ENV defined in FILE.

    Local files the image names are taken relative to FILE's directory (or `root_dir` from `flyte.init`).
    Prints the context directory, the image identifier and the tag.
    """
    module = load_module(file)
    envs = {value.name: value for value in vars(module).values() if isinstance(value, TaskEnvironment)}
    env = envs.get(env_name)
    if env is None:
        available = ", ".join(sorted(envs)) or "none"
        raise CliUsageError(f"no environment '{env_name}' in {file}; its environments are: {available}")
    image = env.image if isinstance(env.image, Image) else Image.auto()
    root = current_config().root_dir or file.resolve().parent
    directory = output or Path("flyte-build") / f"{env.name}-{image.identifier}"
    try:
        context = write_build_context(image, directory, root, env)
        tag = docker_build(context) if use_docker else image_tag(image, env.name)
    except ImageBuildError as error:
        raise CliError(error.message) from None
    click.echo(f"context    {context.directory}")
    click.echo(f"dockerfile {context.dockerfile}")
    click.echo(f"identifier {context.identifier}")
    click.echo(f"tag        {tag}")
