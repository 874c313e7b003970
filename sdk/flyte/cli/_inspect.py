"""`flyte deploy`, `flyte get tasks|runs|run|actions` and `flyte abort run`: the registry and runs, from the shell.

Each works against the configured gateway, or in local mode against this machine's deployments and runs.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

import flyte
from flyte._client import GatewayError
from flyte._environment import TaskEnvironment
from flyte._wire import Phase
from flyte.errors import DeploymentError

from ._errors import CliError, CliUsageError
from ._follow import announce, attach
from ._load import load_module
from ._output import OutputFormat, format_duration, output_option, print_listing, stdout_console

if TYPE_CHECKING:
    from rich.tree import Tree

    from flyte._remote_run import RemoteRun
    from flyte._wire import RunTrace, SpanRecord


def _init() -> None:
    try:
        flyte.init_from_config()
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@click.command("deploy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("env_name", metavar="ENV")
@click.option("--version", default=None, help="The version to deploy (default: a digest of the code and settings).")
@click.option("--dry-run", is_flag=True, help="Show what would be deployed.")
def deploy(file: Path, env_name: str, version: str | None, dry_run: bool) -> None:
    """Deploy environment ENV from FILE, with the environments it depends on."""
    module = load_module(file)
    envs = {v.name: v for v in vars(module).values() if isinstance(v, TaskEnvironment)}
    env = envs.get(env_name) or next((v for k, v in vars(module).items() if k == env_name and v in envs.values()), None)
    if env is None:
        known = ", ".join(sorted(envs)) or "none"
        raise CliUsageError(f"no environment '{env_name}' in {file}; its environments are: {known}")
    _init()
    try:
        deployments = flyte.deploy(env, version=version, dry_run=dry_run)
    except DeploymentError as exc:
        raise CliError(exc.message) from None
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    for deployment in deployments:
        click.echo(deployment.summary_repr())


@click.group("get")
def get() -> None:
    """Show deployed tasks, runs and actions."""


@get.command("tasks")
@output_option
def get_tasks(output: OutputFormat) -> None:
    """The latest version of every deployed task: what `remote.Task.get` and `flyte run deployed-task` can call."""
    _init()
    try:
        tasks = flyte.remote.Task.listall()
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    rows = [[t.name, t.version, t.signature or "-", _when(t.deployed_at)] for t in tasks]
    print_listing("tasks", ["task", "version", "signature", "deployed"], rows, output, objects=tasks)


@get.command("runs")
@click.option(
    "--phase", type=click.Choice([p.value for p in Phase], case_sensitive=False), help="Only runs in this phase."
)
@click.option("--task", "task_name", default=None, help="Only runs of this task.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@output_option
def get_runs(phase: str | None, task_name: str | None, limit: int, output: OutputFormat) -> None:
    """Runs, newest first."""
    _init()
    try:
        runs = list(flyte.remote.Run.listall(in_phase=phase, task_name=task_name, limit=limit))
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    rows = [[r.name, r.task, r.phase.value, _when(r.created_at), _when(r.ended_at)] for r in runs]
    print_listing("runs", ["run", "task", "phase", "created", "ended"], rows, output, objects=runs)


@get.command("run")
@click.argument("run_name", metavar="RUN")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Attach to the run until it ends, as flyte run does (and exit as it does: 0 succeeded, 1 failed).",
)
@click.pass_context
def get_run(ctx: click.Context, run_name: str, follow: bool) -> None:
    """One run: its name, url, task and phase; with --follow, its progress until it ends and its outcome."""
    _init()
    from flyte._config import current_config

    if follow:
        if not current_config().is_remote:
            raise CliError("local runs end with the process that runs them; following needs a gateway")
        run = _remote_run(run_name)
        announce(run)
        ctx.exit(attach(run))
    try:
        shown = flyte.remote.Run.get(run_name)
    except (LookupError, GatewayError) as exc:
        raise CliError(str(exc)) from None
    click.echo(f"run: {shown.name}")
    click.echo(f"url: {shown.url}")
    click.echo(f"task: {shown.task}")
    click.echo(f"phase: {shown.phase.value}")
    click.echo(f"created: {_when(shown.created_at)}")
    click.echo(f"ended: {_when(shown.ended_at)}")
    if shown.error is not None:
        click.echo(f"error: {shown.error.code}: {' '.join(shown.error.message.split())}")


def _remote_run(run_name: str) -> RemoteRun:
    """A handle that follows a run in the gateway, with its task's interface from the registry to read its outputs."""
    from flyte._client import call_sync, client_for
    from flyte._remote_run import RemoteRun

    client = client_for()
    try:
        summary = call_sync(client.get_run(run_name))
        reference = flyte.remote.Task.get(
            summary.task, version=summary.version, project=summary.project, domain=summary.domain
        )
        return RemoteRun(client, summary, reference.deployed())
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    except flyte.errors.RemoteTaskNotFoundError as exc:
        raise CliError(f"run {run_name}: {exc.message}") from None


@get.command("actions")
@click.argument("run_name", metavar="RUN")
@output_option
def get_actions(run_name: str, output: OutputFormat) -> None:
    """The actions of one run."""
    _init()
    try:
        run = flyte.remote.Run.get(run_name)
        actions = run.actions()
    except (LookupError, GatewayError) as exc:
        raise CliError(str(exc)) from None
    rows = [
        [
            a.name,
            a.parent or "-",
            a.task,
            a.phase.value,
            # A cache hit never ran: "0" alone would read as an action that has not started.
            "cached" if a.cached else str(a.attempts),
            a.cluster or "-",
            f"{a.error.code}: {a.error.message}" if a.error else f"waiting: {a.waiting}" if a.waiting else "",
        ]
        for a in actions
    ]
    columns = ["action", "parent", "task", "phase", "attempts", "cluster", "error or why it waits"]
    print_listing(f"actions of {run_name}", columns, rows, output, objects=actions, message_column=columns[-1])


@get.command("logs")
@click.argument("run_name", metavar="RUN")
@click.argument("action", default="a0")
@click.option("--attempt", type=click.IntRange(1), default=None, help="Default: the latest attempt.")
def get_logs(run_name: str, action: str, attempt: int | None) -> None:
    """The stdout and stderr of one action's attempt (the root action by default)."""
    _init()
    from flyte._client import call_sync, client_for
    from flyte._config import current_config

    if not current_config().is_remote:
        raise CliError("local runs print their output where they run; logs are kept by a gateway")
    client = client_for()
    params = client.run_params(**({"attempt": str(attempt)} if attempt else {}))
    try:
        text = call_sync(client.request("GET", f"/api/v1/runs/{run_name}/actions/{action}/logs", params=params))
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    shown = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    if not shown:
        # On stderr, so `flyte get logs RUN > out.txt` still captures exactly what the task printed.
        click.echo("(no output)", err=True)
    click.echo(shown, nl=False)


@get.command("trace")
@click.argument("run_name", metavar="RUN")
def get_trace(run_name: str) -> None:
    """The run's OpenTelemetry spans as a tree: where each step ran and how long it took."""
    _init()
    from flyte._client import call_sync, client_for
    from flyte._config import current_config
    from flyte._wire import RunTrace

    if not current_config().is_remote:
        raise CliError("traces are kept by a gateway; local runs have none")
    try:
        client = client_for()
        answer = call_sync(client.request("GET", f"/api/v1/runs/{run_name}/trace", params=client.run_params()))
        trace = RunTrace.model_validate(answer)
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    if not trace.spans:
        raise CliError(f"run {run_name} has no spans (yet, or tracing is off: FLYTE_TRACING=0)")
    stdout_console().print(_trace_tree(trace))


def _trace_tree(trace: RunTrace) -> Tree:
    from rich.markup import escape
    from rich.tree import Tree

    known = {s.span_id for s in trace.spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in trace.spans:  # sorted by start: siblings come out in order
        parent = span.parent_span_id if span.parent_span_id in known else None
        children.setdefault(parent, []).append(span)
    root = Tree(f"trace of run {escape(trace.run)}")

    def add(node: Tree, parent: str | None) -> None:
        for span in children.get(parent, ()):
            where = f"{span.service}@{span.cluster}" if span.cluster else span.service
            replayed = " [yellow]replayed[/]" if span.attributes.get("flyte.replayed") is True else ""
            error = " [red]error[/]" if span.status == "error" else ""
            took = format_duration((span.end_ns - span.start_ns) / 1e9)
            label = f"{escape(span.name)}  [dim]{escape(where)}[/]  {took}{replayed}{error}"
            add(node.add(label), span.span_id)

    add(root, None)
    return root


@click.group("abort")
def abort() -> None:
    """Abort runs."""


@abort.command("run")
@click.argument("run_name", metavar="RUN")
@click.option("--reason", default="aborted from the CLI", show_default=True)
def abort_run(run_name: str, reason: str) -> None:
    """Abort a run and every action of it that has not ended."""
    _init()
    from flyte._client import call_sync, client_for
    from flyte._config import current_config

    if not current_config().is_remote:
        raise CliError("local runs end with the process that runs them; abort needs a gateway")
    try:
        summary = call_sync(client_for().abort_run(run_name, reason))
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"run {summary.name}: {summary.phase.value}")
