"""Progress of a run while `flyte run` waits for it, on stderr.

On a terminal a rich `Live` display redraws ~8 times a second: the run, its elapsed time, its actions counted
by phase and the few that changed most recently. Anywhere else (pipes, CI logs, tests) animation would only
be noise, so a single summary line is printed when the run ends. rich is imported only for the live display.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import click

from flyte._run import Run
from flyte._run_state import ActionRecord, RunState
from flyte._wire import Phase

from ._output import format_duration

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.spinner import Spinner

REFRESH_PER_SECOND = 8
RECENT_ACTIONS = 6

# The phases always shown, in the order an action moves through them; the others appear when they occur.
_ALWAYS_SHOWN = (Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED)
_PHASE_STYLE = {
    Phase.QUEUED: "yellow",
    Phase.PLACED: "cyan",
    Phase.RUNNING: "blue",
    Phase.SUCCEEDED: "green",
    Phase.FAILED: "red",
    Phase.ABORTED: "magenta",
}
_PHASE_MARK = {Phase.SUCCEEDED: "✓", Phase.FAILED: "✗", Phase.ABORTED: "■"}


def stderr_is_interactive() -> bool:
    """Whether stderr is a terminal that can redraw in place."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def watch(run: Run, interactive: bool, console: Console | None = None) -> None:
    """Wait for the run to end, showing its progress; KeyboardInterrupt passes through to the caller."""
    if not interactive:
        _wait(run)
        click.echo(summary_line(run), err=True)
        return
    from rich.console import Console
    from rich.live import Live

    display = _LiveDisplay(run)
    try:
        with Live(
            display,
            console=console or Console(stderr=True),
            refresh_per_second=REFRESH_PER_SECOND,
            transient=False,
        ) as live:
            _wait(run)
            # The last automatic refresh may predate the end; draw the final state before Live stops.
            live.refresh()
    finally:
        display.close()


def summary_line(run: Run) -> str:
    """`run r1a2b3 succeeded in 1.2 s: 11 actions (11 succeeded)`."""
    state = run._state
    counts = _counts_text(state)
    total = len(state.actions)
    plural = "action" if total == 1 else "actions"
    return f"run {run.name} {run.phase.value} in {format_duration(_elapsed(state))}: {total} {plural} ({counts})"


def _wait(run: Run) -> None:
    # A timed wait keeps the main thread responsive to Ctrl-C on every platform.
    while not run._state.finished.wait(0.1):
        pass


def _elapsed(state: RunState) -> float:
    return max(0.0, (state.ended_at or time.time()) - state.created_at)


def _counts_text(state: RunState) -> str:
    # A copy, because the run's event loop thread updates the counter while we read it.
    counts = dict(state.phase_counts)
    shown = [p for p in Phase if p in _ALWAYS_SHOWN or counts.get(p)]
    return ", ".join(f"{counts.get(p, 0)} {p.value}" for p in shown)


def _last_change(record: ActionRecord) -> float:
    return record.ended_at or record.started_at or 0.0


class _RecentActions:
    """The names of the actions that changed most recently, fed by the run's phase-change listeners."""

    def __init__(self, state: RunState, keep: int = 64):
        self._state = state
        self._lock = threading.Lock()
        self._names: deque[str] = deque(maxlen=keep)
        state.listeners.append(self._saw)
        # Actions that changed before the listener was attached (the run started before we got here), oldest
        # change first so the display's order stays "most recent first".
        for record in sorted(list(state.actions.values()), key=_last_change):
            self._saw_name(record.name)

    def _saw(self, record: ActionRecord) -> None:
        self._saw_name(record.name)

    def _saw_name(self, name: str) -> None:
        with self._lock:
            self._names.append(name)

    def latest(self, count: int) -> list[ActionRecord]:
        """Up to `count` distinct actions, most recently changed first."""
        with self._lock:
            names = list(self._names)
        picked: list[ActionRecord] = []
        seen: set[str] = set()
        for name in reversed(names):
            record = self._state.actions.get(name)
            if name in seen or record is None:
                continue
            seen.add(name)
            picked.append(record)
            if len(picked) == count:
                break
        return picked

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._state.listeners.remove(self._saw)


class _LiveDisplay:
    """What the `Live` display draws; rebuilt from the run's state on every refresh."""

    def __init__(self, run: Run):
        from rich.spinner import Spinner

        self._run = run
        self._recent = _RecentActions(run._state)
        # One spinner for the whole run: its frame is derived from when it was first drawn.
        self._spinner: Spinner = Spinner("dots", style="blue")

    def close(self) -> None:
        self._recent.close()

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        state = self._run._state
        phase = state.phase
        header = Text.assemble(
            ("run ", "bold"),
            (self._run.name, "bold cyan"),
            "  ",
            state.task_name,
            "  ",
            (phase.value, _PHASE_STYLE.get(phase, "")),
            "  ",
            (format_duration(_elapsed(state)), "dim"),
        )
        if state.finished.is_set():
            mark = _PHASE_MARK.get(phase, "•")
            top: RenderableType = Text.assemble((f"{mark} ", _PHASE_STYLE.get(phase, "")), header)
        else:
            self._spinner.update(text=header)
            top = self._spinner

        counts = dict(state.phase_counts)
        shown = [p for p in Phase if p in _ALWAYS_SHOWN or counts.get(p)]
        total = len(state.actions)
        count_line = Text("  ")
        count_line.append(f"{total} action{'' if total == 1 else 's'}: ")
        for i, p in enumerate(shown):
            if i:
                count_line.append(" · ", style="dim")
            count_line.append(f"{counts.get(p, 0)} {p.value}", style=_PHASE_STYLE.get(p, ""))

        table = Table.grid(padding=(0, 2))
        # Names fold rather than being cut (a no-wrap column is cropped without a mark when the line is short).
        table.add_column(overflow="fold")
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        table.add_column(no_wrap=True, style="dim")
        for record in self._recent.latest(RECENT_ACTIONS):
            notes = []
            if record.cached:
                notes.append("cached")
            if record.attempts > 1:
                notes.append(f"attempt {record.attempts}")
            task = f"{record.group}/{record.task}" if record.group else record.task
            table.add_row(
                Text(f"  {record.name}", style="dim"),
                Text(record.phase.value, style=_PHASE_STYLE.get(record.phase, "")),
                task,
                ", ".join(notes),
            )
        return Group(top, count_line, table)
