"""Following a run from the shell: what `flyte run` and `flyte get run RUN --follow` print while a run goes on.

The run's name and url go to stdout the moment the run exists, so a pipe or a CI log names the run long before it
ends. Progress goes to stderr: on a terminal a line redrawn in place; anywhere else one line per phase change of the
run's root action (and one per failed child), since a log keeps every line and animation would be noise. The outcome
(phase, outputs) goes to stdout when the run ends, and the exit code says how it ended.

Following is not owning: Ctrl-C stops following a run in the gateway and leaves it running, saying how to follow it
again and how to abort it; a second Ctrl-C within a few seconds aborts it. A local run lives in this process, so
there Ctrl-C aborts it at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from typing import Any

import click
import pydantic_core

from flyte._client import GatewayError
from flyte._remote_run import RemoteRun
from flyte._run import Run
from flyte._wire import ActionSummary, ErrorInfo, Phase
from flyte.errors import BaseRuntimeError

from ._errors import CliError
from ._output import format_duration
from ._progress import stderr_is_interactive

ABORT_GRACE_SECONDS = 3.0
"""How long a second Ctrl-C aborts the run after the first stopped following it."""

ABORT_GRACE_ENV = "FLYTE_ABORT_GRACE_SECONDS"
"""Overrides `ABORT_GRACE_SECONDS` (a slow terminal, or a test that must not race the window)."""

INTERRUPTED = 130
"""The shell's exit code for a process ended by Ctrl-C (128 + SIGINT)."""

ROOT = "a0"


def announce(run: Run | RemoteRun) -> None:
    """The run's name and url on stdout, flushed at once: the first thing a log or a pipe reads."""
    click.echo(f"run: {run.name}")
    click.echo(f"url: {run.url}")


def attach(run: RemoteRun) -> int:
    """Follow a run in the gateway to its end and report it; Ctrl-C leaves it running. The exit code."""
    try:
        follow_remote(run, stderr_is_interactive())
    except KeyboardInterrupt:
        return stop_following(run)
    return report(run)


def follow_remote(run: RemoteRun, interactive: bool) -> None:
    """Follow a run in the gateway until it ends; KeyboardInterrupt passes through to the caller."""
    show = _CountsLine(run.name) if interactive else PhaseLines(run.name)
    with contextlib.suppress(BaseRuntimeError):
        run.wait(on_change=show.saw)
    show.close(run)


class PhaseLines:
    """One line per phase change of the run's root (and per change of why it waits), and one per failed child."""

    def __init__(self, run_name: str):
        self._run = run_name
        self._shown: dict[str, tuple[Phase, str | None]] = {}

    def saw(self, action: ActionSummary) -> None:
        if action.name == ROOT:
            key = (action.phase, action.waiting if action.phase is Phase.QUEUED else None)
        elif action.phase is Phase.FAILED:
            key = (action.phase, None)
        else:
            return
        # The watch resends what it already sent when it reconnects: a state is shown once.
        if self._shown.get(action.name) == key:
            return
        self._shown[action.name] = key
        click.echo(_stamped(_root_line(self._run, action) if action.name == ROOT else _child_line(action)), err=True)

    def close(self, run: RemoteRun) -> None:
        """The run's end, if the watch ended before the root's last change reached us (the run was already over)."""
        phase = run.phase
        shown = self._shown.get(ROOT)
        if phase.is_terminal and (shown is None or shown[0] is not phase):
            line = f"run {self._run} {phase.value}"
            summary = run._summary
            if summary.ended_at is not None:
                line += f" in {format_duration(summary.ended_at - summary.created_at)}"
            click.echo(_stamped(line + _error_text(summary.error)), err=True)


class _CountsLine:
    """On a terminal: the run's actions counted by phase, redrawn in place on every change."""

    def __init__(self, run_name: str):
        self._run = run_name
        self._phases: dict[str, str] = {}

    def saw(self, action: ActionSummary) -> None:
        self._phases[action.name] = action.phase.value
        counts = Counter(self._phases.values())
        text = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
        click.echo(f"\r{self._run}: {len(self._phases)} actions ({text})\033[K", err=True, nl=False)

    def close(self, _run: RemoteRun) -> None:
        click.echo("", err=True)


def _stamped(line: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {line}"


def _root_line(run_name: str, root: ActionSummary) -> str:
    line = f"run {run_name} {root.phase.value}"
    if root.phase in (Phase.PLACED, Phase.RUNNING) and root.cluster:
        line += f" on {root.cluster}"
    if root.attempts > 1 and not root.phase.is_terminal:
        line += f" (attempt {root.attempts})"
    if root.phase.is_terminal and root.created_at is not None and root.ended_at is not None:
        line += f" in {format_duration(root.ended_at - root.created_at)}"
    if root.phase is Phase.QUEUED and root.waiting:
        line += f": waiting: {root.waiting}"
    return line + _error_text(root.error if root.phase.is_terminal else None)


def _child_line(action: ActionSummary) -> str:
    where = f" on {action.cluster}" if action.cluster else ""
    return f"action {action.name} ({action.task}) failed{where}" + _error_text(action.error)


def _error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    first = next((line for line in error.message.splitlines() if line.strip()), "")
    return f": {error.code}: {first.strip()}"


def stop_following(run: RemoteRun) -> int:
    """After a first Ctrl-C: leave the run running, say how to come back, and abort on a second Ctrl-C."""
    grace = _abort_grace()
    click.echo("", err=True)
    click.echo(f"Stopped following run {run.name}; it goes on in the gateway.", err=True)
    click.echo(f"  follow it again: flyte get run {run.name} --follow", err=True)
    click.echo(f"  abort it:        flyte abort run {run.name}", err=True)
    click.echo(f"Press Ctrl-C again within {grace:g} s to abort it now.", err=True)
    try:
        # Not a wait for anything: the window in which a second Ctrl-C means "abort".
        time.sleep(grace)
    except KeyboardInterrupt:
        try:
            abort(run)
        except GatewayError as exc:
            raise CliError(f"could not abort run {run.name}: {exc}; try flyte abort run {run.name}") from None
        report(run)
        return INTERRUPTED
    # The outcome so far, as the last line of stdout always is; a gateway out of reach leaves it unsaid.
    with contextlib.suppress(GatewayError):
        click.echo(f"phase: {run.phase.value}")
    return INTERRUPTED


def _abort_grace() -> float:
    text = os.environ.get(ABORT_GRACE_ENV)
    if text is None:
        return ABORT_GRACE_SECONDS
    try:
        return max(0.0, float(text))
    except ValueError:
        return ABORT_GRACE_SECONDS


def abort(run: Run | RemoteRun) -> None:
    click.echo(f"Interrupted: aborting run {run.name}", err=True)
    run.abort("interrupted")
    # A second Ctrl-C means "stop waiting"; the run's thread dies with the process.
    if isinstance(run, Run):
        with contextlib.suppress(KeyboardInterrupt):
            run._state.finished.wait(10)


def report(run: Run | RemoteRun) -> int:
    """Print the outcome: phase and outputs on stdout, the error on stderr; the exit code."""
    click.echo(f"phase: {run.phase.value}")
    if run.phase is Phase.SUCCEEDED:
        outputs = run.outputs()
        for i, value in enumerate(outputs):
            label = "output" if len(outputs) == 1 else f"output[{i}]"
            click.echo(f"{label}: {format_value(value)}")
        return 0
    error = run._state.error if isinstance(run, Run) else run._summary.error
    if error is None:
        raise CliError(f"run {run.name} ended {run.phase.value} without an error")
    if error.traceback and run.phase is not Phase.ABORTED:
        click.echo(error.traceback.rstrip(), err=True)
    message = " ".join(error.message.split())
    click.echo(f"Error: run {run.name} {run.phase.value}: {error.code}: {message}", err=True)
    return 1


def format_value(value: Any) -> str:
    """A value as JSON when it has a JSON form (dataclasses and models too), else its repr."""
    try:
        return json.dumps(pydantic_core.to_jsonable_python(value), ensure_ascii=False)
    except (pydantic_core.PydanticSerializationError, TypeError, ValueError):
        return repr(value)
