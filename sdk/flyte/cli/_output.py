"""How the CLI writes values for people and for programs: durations, and the listings of `flyte get ...`.

Listings come in three forms (`--output`): `table` fits a terminal, cutting only long messages, with an ellipsis;
`wide` shows every cell in full; `json` is a list of objects for programs. Identifiers (run, action, task and
cluster names) are never cut: in a narrow terminal they fold onto a second line, and when stdout is not a terminal
(a pipe, a file, CI) every table is printed at its full width, so a name can always be copied whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

OutputFormat = Literal["table", "wide", "json"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("table", "wide", "json")

# Wide enough for any row: rich would otherwise assume 80 columns off a terminal and cut cells to fit.
_UNBOUNDED_WIDTH = 1_000_000

# The message column keeps this much even when names take the rest of the line; below it a message says nothing.
_MIN_MESSAGE_WIDTH = 16
_COLUMN_CHROME = 3

F = TypeVar("F", bound=Callable[..., Any])


def output_option(command: F) -> F:
    """`--output/-o table|wide|json` for a listing command."""
    return click.option(
        "--output",
        "-o",
        "output",
        type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
        default="table",
        show_default=True,
        help="table: fits the terminal, long messages cut; wide: every cell in full; json: a list of objects.",
    )(command)


def print_listing(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    output: OutputFormat = "table",
    *,
    objects: Sequence[Any] = (),
    message_column: str | None = None,
) -> None:
    """Print rows as a table, or `objects` (dataclasses, models, dicts) as a JSON list when `output` is json.

    `message_column` names the one column of free text (an error, a reason): the only one a table may cut.
    """
    if output == "json":
        import pydantic_core

        click.echo(json.dumps(pydantic_core.to_jsonable_python(list(objects)), indent=2, ensure_ascii=False))
        return
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    cut = output == "table" and console.is_terminal
    at = columns.index(message_column) if message_column in columns else -1
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if index == at and cut:
            table.add_column(column, overflow="ellipsis", max_width=_message_room(console.width, columns, rows, at))
        else:
            # Wrappable, so rich narrows these only when the names alone overflow the terminal; then a name folds
            # onto the next line. (no_wrap=True would crop it silently: rich truncates a no-wrap "fold" cell.)
            table.add_column(column, overflow="fold")
    for row in rows:
        # Cells are data, not markup: a signature's `list[float]` would otherwise lose `[float]` as an unknown style.
        cells = [Text(cell) for cell in row]
        if at >= 0:
            # A message's own line breaks would make one row many lines tall.
            text = " ".join(row[at].split())
            cells[at] = Text(text, no_wrap=True, overflow="ellipsis") if cut else Text(text)
        table.add_row(*cells)
    console.print(table)


def stdout_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal, unbounded anywhere else."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=_UNBOUNDED_WIDTH)


def _message_room(width: int, columns: Sequence[str], rows: Sequence[Sequence[str]], at: int) -> int:
    """What a terminal line leaves to the message column once every other column has its full width."""
    from rich.cells import cell_len

    others = [max([cell_len(columns[i])] + [cell_len(row[i]) for row in rows]) for i in range(len(columns)) if i != at]
    # Each column takes its padding and one border; the line takes one more border.
    return max(_MIN_MESSAGE_WIDTH, width - sum(w + _COLUMN_CHROME for w in others) - _COLUMN_CHROME - 1)


def format_duration(seconds: float) -> str:
    """A duration rounded for reading: `0.4 ms`, `20 ms`, `1.2 s`, `3 m 4 s`, `2 h 5 m`."""
    seconds = max(0.0, seconds)
    millis = seconds * 1000
    if round(millis, 1) < 10:
        return f"{millis:.1f} ms"
    if round(millis) < 1000:
        return f"{millis:.0f} ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    minutes = whole // 60
    return f"{minutes // 60} h {minutes % 60} m"
