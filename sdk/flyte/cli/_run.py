"""`flyte run [OPTIONS] FILE TASK [--param value ...]`: run one task from a Python file and show how it goes
(or `flyte run deployed-task NAME[:VERSION] ...`: a task from the registry, see `_deployed`).

Runs are local when `--local` is given or no config names an endpoint (then a note on stderr says so). The run
goes on in the SDK's background thread while this command draws its progress (`_follow`): its name and url go to
stdout as soon as it exists, its outcome (phase and outputs) when it ends, and the exit code says how it ended:
0 succeeded, 1 failed, 2 bad command line, 130 interrupted. `--detach` returns once a remote run is created, and
Ctrl-C stops following a remote run without ending it (see `_follow`); a local run lives in this process, so there
Ctrl-C aborts it and `--detach` is refused.
"""

from __future__ import annotations

from pathlib import Path

import click

import flyte
from flyte._client import GatewayError
from flyte._config import config_search_paths, current_config
from flyte._remote_run import RemoteRun
from flyte._run import Run, RunContext, RunMode
from flyte._run_state import RunOptions
from flyte.errors import DeploymentError, ValueEncodingError

from ._deployed import DEPLOYED_TASK, deployed_help, parse_deployed_args, resolve_deployed
from ._errors import CliError, CliUsageError
from ._follow import INTERRUPTED, abort, announce, attach, report
from ._labels import parse_labels
from ._load import find_task, load_module
from ._params import parse_task_args, task_help, usage_error
from ._placement import parse_duration
from ._progress import stderr_is_interactive, watch

_RUN_OPTIONS = ("local", "follow", "detach", "label", "max-wait")


@click.command(
    short_help="Run a task from a Python file.",
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
)
@click.option("--local", is_flag=True, help="Run in this process even if a config names an endpoint.")
@click.option(
    "--follow/--detach",
    "-f",
    default=True,
    help="Follow the run until it ends (the default), or return once it is created (remote runs only).",
)
@click.option("--name", "run_name", metavar="NAME", help="Name the run (default: random).")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels, help="Label the run (repeatable)."
)
@click.option(
    "--max-wait",
    metavar="DURATION",
    callback=lambda _ctx, _param, value: None if value is None else parse_duration(value, "--max-wait"),
    help="Fail any action of the run queued longer than this (e.g. 90s, 10m, 1h), naming why it waited.",
)
@click.argument("file", metavar="FILE|deployed-task")
@click.argument("task_name", metavar="TASK")
@click.argument("task_args", nargs=-1, type=click.UNPROCESSED, metavar="[--PARAM VALUE]...")
@click.pass_context
def run(
    ctx: click.Context,
    local: bool,
    follow: bool,
    run_name: str | None,
    labels: dict[str, str],
    max_wait: float | None,
    file: str,
    task_name: str,
    task_args: tuple[str, ...],
) -> None:
    """Run TASK from the Python file FILE with parameters from its signature.

    \b
    Options of `flyte run` go before FILE; everything after TASK is the task's:
      flyte run --local hello.py main --name World --count 3 --verbose
      flyte run hello.py main --items '[1, 2]' --no-dry-run
    Lists, dicts, dataclasses and pydantic models are given as JSON.
    `flyte run FILE TASK --help` lists the task's parameters.

    \b
    A task deployed by anyone (`flyte get tasks` lists them) runs by name, without its code:
      flyte run deployed-task features.featurize --x 1
      flyte run deployed-task features.featurize:VERSION --x 1
    """
    if local and not follow:
        raise CliUsageError("--detach cannot be used with --local: a local run lives in this process and ends with it")
    if file == DEPLOYED_TASK:
        options = RunOptions(name=run_name, labels=labels, max_wait_seconds=max_wait)
        _run_deployed(ctx, options, task_name, task_args, follow)
        return
    path = Path(file)
    if not path.is_file():
        raise CliUsageError(f"FILE {file!r} is not a file (or name a deployed task: flyte run deployed-task NAME)")
    module = load_module(path)
    task = find_task(module, task_name, file)
    interface = task.interface
    if ("--help" in task_args or "-h" in task_args) and not {"help", "h"} & set(interface.by_name):
        click.echo(task_help(interface, task.func.__doc__))
        return
    kwargs = parse_task_args(interface, task_args, _RUN_OPTIONS)

    try:
        flyte.init_from_config()
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    config = current_config()
    if not local and not config.is_remote:
        click.echo(_local_note(config.source), err=True)
    mode: RunMode = "local" if local or not config.is_remote else "remote"
    if mode == "local" and not follow:
        raise CliUsageError("--detach needs a gateway: no config names an endpoint, so the run would be local")

    options = RunOptions(name=run_name, labels=labels, max_wait_seconds=max_wait)
    try:
        started = RunContext(mode, options).start(task, (), kwargs)
    except DeploymentError as exc:
        raise CliError(exc.message) from None
    except (NotImplementedError, GatewayError) as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        if isinstance(exc, ValueEncodingError):
            raise usage_error(interface, str(exc)) from None
        raise CliUsageError(str(exc)) from None
    except (TypeError, ValueEncodingError) as exc:
        # The values parsed but the task's own codec refused them (e.g. a value the codec cannot encode).
        raise usage_error(interface, str(exc)) from None

    _follow_and_report(ctx, started, follow)


def _run_deployed(
    ctx: click.Context, options: RunOptions, reference: str, task_args: tuple[str, ...], follow: bool
) -> None:
    try:
        flyte.init_from_config()
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not current_config().is_remote:
        raise CliUsageError("flyte run deployed-task needs a gateway: no config names an endpoint")
    task = resolve_deployed(reference)
    if "--help" in task_args or "-h" in task_args:
        click.echo(deployed_help(task))
        return
    kwargs = parse_deployed_args(task.interface, task_args)
    try:
        started = RunContext("remote", options).start(task, (), kwargs)
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    except ValueEncodingError as exc:
        raise CliUsageError(f"{exc.message}; usage: {task.interface.signature_text}") from None
    except (TypeError, ValueError) as exc:
        raise CliUsageError(f"{exc}; usage: {task.interface.signature_text}") from None
    _follow_and_report(ctx, started, follow)


def _follow_and_report(ctx: click.Context, started: Run | RemoteRun, follow: bool) -> None:
    if isinstance(started, RemoteRun):
        announce(started)
        if not follow:
            click.echo(f"Detached: the run goes on; follow it with flyte get run {started.name} --follow", err=True)
            ctx.exit(0)
        ctx.exit(attach(started))
    try:
        # A local run is already running (its task may be at work): Ctrl-C from here on ends it, even while its
        # name is being printed.
        announce(started)
        watch(started, stderr_is_interactive())
    except KeyboardInterrupt:
        # A local run lives in this process: leaving it is ending it.
        abort(started)
        report(started)
        ctx.exit(INTERRUPTED)
    ctx.exit(report(started))


def _local_note(source: Path | None) -> str:
    """Why a run without `--local` runs in this process: the run must not look remote when it is not."""
    if source is not None:
        why = f"{_shown(source)} names no endpoint"
    else:
        why = f"no config found (looked in {', '.join(_shown(p) for p in config_search_paths())})"
    return f"{why}: running locally; use --local to say so, or flyte rig up / flyte create config"


def _shown(path: Path) -> str:
    """A path as short as it can be written: relative to the current directory, or under `~`."""
    for base, prefix in ((Path.cwd(), "."), (Path.home(), "~")):
        if path.is_relative_to(base):
            return f"{prefix}/{path.relative_to(base)}"
    return str(path)
