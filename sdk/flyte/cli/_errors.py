"""The CLI's error types: reported as a single `Error: ...` line on stderr with a chosen exit code."""

from __future__ import annotations

import click

USAGE = 2
"""Exit code for a command line that cannot work (bad parameters, unknown task), as click uses for usage errors."""

FAILURE = 1
"""Exit code for a command that was well formed but failed."""


class CliError(click.ClickException):
    """An error click prints as `Error: <message>` and exits with `exit_code` (1), without a traceback."""

    # A class attribute, as click declares it: the exit code is a property of the kind of error, not of one error.
    exit_code = FAILURE

    def __init__(self, message: str):
        # Messages often embed exception text; keeping them on one line keeps stderr easy to read and to grep.
        super().__init__(" ".join(line.strip() for line in message.splitlines() if line.strip()))


class CliUsageError(CliError):
    """A command line that cannot work (bad parameters, unknown task): exits 2, as click's own usage errors do."""

    exit_code = USAGE
