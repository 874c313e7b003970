"""`flyte.run`, `flyte.with_runcontext` and the `Run` handle.

Local runs execute on one event loop in a background thread owned by the SDK. That makes `flyte.run` work the same
from a script, from a notebook cell whose loop is already running, and from async code (`await flyte.run.aio`),
and lets the CLI draw live progress while the run goes on. `flyte.run` returns when the run has ended, as a
`Run` whose `wait()` and `outputs()` raise the run's error if it failed: the same contract remote runs keep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._config import current_config
from ._environment import registered_environments
from ._interface import EncodedInputs
from ._local_controller import LocalController
from ._logging import set_log_level
from ._naming import ROOT_ACTION, new_run_name
from ._paths import runs_dir
from ._remote_run import RemoteRun
from ._remote_task import RemoteTask
from ._run_state import ActionRecord, RunOptions, RunState, read_action_summaries, read_run_summary, read_traces
from ._task import TaskTemplate
from ._timeout import to_timedelta
from ._unimplemented import not_implemented
from ._wire import ActionSummary, Phase
from .errors import ActionAbortedError, RemoteTaskNotFoundError, error_info, from_info
from .notify import rules_to_wire

RunMode = Literal["local", "remote"]
if TYPE_CHECKING:
    from .remote._task import TaskReference

    Runnable = TaskTemplate[..., Any] | RemoteTask | TaskReference
    """A task, a deployed task, or a `remote.Task.get` reference."""

_RUN_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class RunOutputs(tuple[Any, ...]):
    """A run's outputs: a tuple, so `outputs()[0]` is the first and a single output equals its 1-tuple."""

    __slots__ = ()


class Run:
    """A handle on one run."""

    def __init__(self, state: RunState, done: concurrent.futures.Future[None]):
        self._state = state
        self._done = done

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def url(self) -> str:
        """Where to look at the run; for a local run, its metadata directory."""
        return str(self._state.metadata_dir)

    @property
    def phase(self) -> Phase:
        return self._state.phase

    def done(self) -> bool:
        return self._state.phase.is_terminal

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends; raise its error if it failed or was aborted."""
        if not self._state.finished.wait(timeout):
            raise TimeoutError(f"run {self.name} is still {self.phase} after {timeout}s")
        if self._state.error is not None:
            raise from_info(self._state.error)

    def outputs(self) -> RunOutputs:
        """The root task's outputs; waits for the run first."""
        self.wait()
        output = self._state.output
        if output is None:
            return RunOutputs(())
        interface = self._state.interface
        return RunOutputs(interface.as_outputs(interface.output_codec.decode(output)))

    def inputs(self) -> dict[str, Any]:
        return self._state.interface.decode_inputs(self._state.inputs)

    def watch(self) -> Iterator[ActionSummary]:
        """Each action's changes as they happen (phase, attempts), until the run ends."""
        changes: queue.SimpleQueue[ActionSummary | None] = queue.SimpleQueue()
        state = self._state

        def publish(record: ActionRecord) -> None:
            changes.put(ActionSummary.model_validate_json(record.summary_json()))

        state.listeners.append(publish)
        self._done.add_done_callback(lambda _: changes.put(None))
        try:
            for record in list(state.actions.values()):
                yield ActionSummary.model_validate_json(record.summary_json())
            while not self.done():
                change = changes.get()
                if change is None:
                    break
                yield change
        finally:
            state.listeners.remove(publish)

    def abort(self, reason: str = "aborted by the user") -> None:
        """Abort the run: every running action is cancelled and the run ends `aborted`."""
        if not self.done():
            self._state.aborted_reason = reason
            self._done.cancel()

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, phase={self.phase.value!r}, url={self.url!r})"

    def _repr_html_(self) -> str:
        state = self._state
        counts = ", ".join(f"{n} {p.value}" for p, n in sorted(state.phase_counts.items()) if n)
        error = f"<div><b>error</b>: {html.escape(str(state.error.message))}</div>" if state.error else ""
        return (
            f"<div class='flyte-run'><b>Run</b> <code>{html.escape(self.name)}</code> "
            f"&mdash; {html.escape(state.task_name)} &mdash; <b>{self.phase.value}</b>"
            f"<div>{len(state.actions)} actions: {html.escape(counts)}</div>{error}"
            f"<div><a href='file://{html.escape(self.url)}'>{html.escape(self.url)}</a></div></div>"
        )


class _LoopThread:
    """The SDK's own event loop, in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="flyte-loop", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop


sdk_loop = _LoopThread()


class RunContext:
    """Settings for the runs it starts: `flyte.with_runcontext(name=..., labels=...).run(task, ...)`."""

    def __init__(self, mode: RunMode | None = None, options: RunOptions | None = None):
        if mode not in (None, "local", "remote"):
            raise ValueError(f"with_runcontext: mode={mode!r} must be 'local' or 'remote'")
        self.mode = mode
        self.options = options or RunOptions()

    @property
    def run(self) -> _Runner:
        return _Runner(self)

    def start(self, task: Runnable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Run | RemoteRun:
        """Start a run and return at once (the CLI uses this to show progress while it runs)."""
        from .remote._task import TaskReference

        remote = self.mode != "local" and current_config().is_remote
        if isinstance(task, TaskReference):
            # A deployed task runs from the registry in remote mode; locally only its loaded code can run.
            task = task.deployed() if remote else task.resolve()
        if isinstance(task, RemoteTask):
            if not remote:
                raise ValueError(f"{task.name} is a deployed task: run it in remote mode (with an endpoint)")
            from ._remote_run import start_deployed

            return start_deployed(task, args, kwargs, self.options)
        if not isinstance(task, TaskTemplate):
            raise TypeError(f"flyte.run expects a task (decorated with @env.task), not {task!r}")
        config = current_config()
        mode = self.mode or ("remote" if config.is_remote else "local")
        if mode == "remote":
            if not config.is_remote:
                raise ValueError("mode='remote' needs an endpoint: flyte.init(endpoint=...) or a config file")
            from ._remote_run import start_remote

            return start_remote(task, args, kwargs, self.options)
        inputs = task.interface.encode_inputs(task.interface.bind(args, kwargs))
        return self._start_local(task, inputs, None)

    def _start_local(self, task: TaskTemplate[..., Any], inputs: EncodedInputs, recover_from: Path | None) -> Run:
        config = current_config()
        name = self.options.name or new_run_name()
        if not _RUN_NAME.match(name):
            raise ValueError(f"run name {name!r} must be lower-case letters, digits and '-', at most 63 characters")
        if (runs_dir() / name / "run.json").exists():
            raise ValueError(f"a run named {name!r} already exists; run names are unique")
        state = RunState(
            name=name,
            task_name=task.name,
            interface=task.interface,
            inputs=inputs,
            options=self.options,
            project=self.options.project or config.project,
            domain=self.options.domain or config.domain,
            metadata_dir=runs_dir() / name,
        )
        if recover_from is not None:
            _recover(state, recover_from)
        loop = sdk_loop.get()
        controller = LocalController(state, loop, self.options.version or "local")
        state.write_metadata()
        future = asyncio.run_coroutine_threadsafe(_run_and_record(controller, task, state), loop)
        return Run(state, future)


def _recover(state: RunState, previous: Path) -> None:
    """Seed a run with the succeeded actions and trace checkpoints of an earlier run of the same task and inputs.

    Child names derive from the root's name, the task, the inputs and the call order, so the re-run asks for the
    same names and finds these results instead of running them again.
    """
    for summary in read_action_summaries(previous):
        if summary.phase is Phase.SUCCEEDED and summary.name != ROOT_ACTION:
            output = summary.output.to_encoded() if summary.output is not None else None
            record = ActionRecord(summary.name, summary.parent, summary.task, summary.group, output=output)
            record.attempts = summary.attempts
            record.cached = True
            state.add(record)
            state.move(record, Phase.SUCCEEDED)
    state.traces.update(read_traces(previous))


def rerun(run_name: str, recover: bool = True, name: str | None = None) -> Run:
    """Run an earlier run's task again with its inputs; with `recover`, reuse every action that succeeded.

    The task must be defined in this process (import its module first).
    """
    previous = runs_dir() / run_name
    if not (previous / "run.json").exists():
        raise LookupError(f"no run named {run_name!r} in {runs_dir()}")
    summary = read_run_summary(previous)
    env_name, _, func_name = summary.task.rpartition(".")
    env = registered_environments().get(env_name)
    task = env.tasks.get(func_name) if env is not None else None
    if task is None:
        raise RemoteTaskNotFoundError(
            f"run {run_name} ran {summary.task}, which is not defined in this process; import its module first"
        )
    inputs = EncodedInputs.of({key: value.to_encoded() for key, value in summary.inputs.items()})
    context = RunContext(options=RunOptions(name=name, labels=summary.labels))
    started = context._start_local(task, inputs, previous if recover else None)
    started._state.finished.wait()
    return started


async def _run_and_record(controller: LocalController, task: TaskTemplate[..., Any], state: RunState) -> None:
    try:
        await controller.run_root(task, ROOT_ACTION, state.inputs)
    finally:
        if not state.phase.is_terminal or state.phase is Phase.ABORTED:
            state.phase = Phase.ABORTED
            reason = state.aborted_reason or f"run {state.name} was aborted"
            state.error = error_info(ActionAbortedError(reason))
        state.ended_at = time.time()
        try:
            state.write_metadata()
        finally:
            state.finished.set()


class _Runner:
    """`flyte.run(task, ...)` from sync code, `await flyte.run.aio(task, ...)` from async code."""

    def __init__(self, context: RunContext | None = None):
        self._context = context

    def _ctx(self) -> RunContext:
        return self._context or RunContext()

    def __call__(self, task: Runnable, *args: Any, **kwargs: Any) -> Run | RemoteRun:
        """Local runs return when they end; remote runs return once created (`wait()` follows them)."""
        run = self._ctx().start(task, args, kwargs)
        if isinstance(run, RemoteRun):
            return run
        try:
            run._state.finished.wait()
        except KeyboardInterrupt:
            run.abort("interrupted")
            run._state.finished.wait(10)
            raise
        return run

    async def aio(self, task: Runnable, *args: Any, **kwargs: Any) -> Run | RemoteRun:
        run = await asyncio.to_thread(self._ctx().start, task, args, kwargs)
        if isinstance(run, Run):
            await asyncio.to_thread(run._state.finished.wait)
        return run


run = _Runner()


def with_runcontext(
    mode: RunMode | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    project: str | None = None,
    domain: str | None = None,
    env_vars: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    overwrite_cache: bool = False,
    disable_run_cache: bool = False,
    queue: str | None = None,
    max_action_concurrency: int | None = None,
    custom_context: Mapping[str, str] | None = None,
    max_wait: timedelta | int | float | None = None,
    notifications: Any = None,
    **flyte2: Any,
) -> RunContext:
    """Settings for the next run: `flyte.with_runcontext(name="nightly").run(main, x=1)`.

    `max_wait` (seconds or a timedelta) bounds how long any action of a remote run may stay queued: past it the
    action fails with `MaxWaitExceeded`, naming the reason it waited. Local runs queue nothing and ignore it.
    `notifications` (`flyte.notify` rules) are sent by the gateway when a remote run ends; local runs send none.
    Flyte 2's other settings are accepted by name (see `FLYTE2_RUN_SETTINGS`): `log_level` sets the loggers'
    level, `dry_run=True` and `copy_bundle_to` raise `NotImplementedError`, and the rest have no effect here.
    """
    _flyte2_run_settings(flyte2)
    wait = None if max_wait is None else to_timedelta(max_wait, "with_runcontext: max_wait").total_seconds()
    if max_action_concurrency is not None and max_action_concurrency < 1:
        raise ValueError(f"with_runcontext: max_action_concurrency={max_action_concurrency} must be >= 1")
    options = RunOptions(
        name=name,
        version=version,
        project=project,
        domain=domain,
        env_vars=dict(env_vars or {}),
        labels=dict(labels or {}),
        overwrite_cache=overwrite_cache,
        disable_run_cache=disable_run_cache,
        queue=queue,
        max_action_concurrency=max_action_concurrency,
        custom_context=dict(custom_context or {}),
        max_wait_seconds=wait,
        notifications=tuple(rules_to_wire(notifications)),
    )
    return RunContext(mode, options)


FLYTE2_RUN_SETTINGS = frozenset(
    {
        "annotations",
        "cache_lookup_scope",
        "copy_bundle_to",
        "copy_style",
        "dry_run",
        "interactive_mode",
        "interruptible",
        "log_format",
        "log_level",
        "preserve_original_types",
        "raw_data_path",
        "reset_root_logger",
        "run_base_dir",
        "service_account",
        "user_log_level",
    }
)
"""Flyte 2's `with_runcontext` settings that this SDK accepts beyond its own."""


def _flyte2_run_settings(settings: Mapping[str, Any]) -> None:
    unknown = sorted(set(settings) - FLYTE2_RUN_SETTINGS)
    if unknown:
        raise TypeError(f"with_runcontext() got unexpected keyword arguments {unknown}")
    if settings.get("dry_run"):
        raise not_implemented("with_runcontext(dry_run=True)", "dry-run runs")
    if settings.get("copy_bundle_to") is not None:
        raise not_implemented("with_runcontext(copy_bundle_to=)", "writing the code bundle out")
    set_log_level(settings.get("log_level"))
