"""What each attempt of a warm pool worker prints and logs, kept apart by attempt.

A one-off worker's whole output is its attempt's: the agent reads its pipes. A pool worker runs many attempts in
one process, several at once, so its `sys.stdout` and `sys.stderr` become tees: everything still reaches the
process's own streams, and what is written while an attempt runs (in its asyncio task, or in the thread of a sync
task, which copies the task's context) is also kept for that attempt, for the pool's socket to carry to the agent,
which ships it as the attempt's logs. `logging` writes through the tee too (its handler is made after it).
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import TextIO

from .._wire import STREAMS, Stream

_attempt: contextvars.ContextVar[str | None] = contextvars.ContextVar("flyte_attempt_output", default=None)


class AttemptOutput:
    """Output by attempt key, taken in batches; safe to write from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[str, str]]] = {}

    def write(self, stream: str, text: str) -> None:
        key = _attempt.get()
        if key is None or not text:
            return
        with self._lock:
            self._pending.setdefault(key, []).append((stream, text))

    def take(self, key: str | None = None) -> list[tuple[str, Stream, str]]:
        """(key, stream, text) written since the last take: of one attempt, or of all."""
        with self._lock:
            if key is None:
                pending, self._pending = self._pending, {}
            else:
                pending = {key: self._pending.pop(key)} if key in self._pending else {}
        taken: list[tuple[str, Stream, str]] = []
        for attempt, chunks in pending.items():
            for stream in STREAMS:
                text = "".join(t for s, t in chunks if s == stream)
                if text:
                    taken.append((attempt, stream, text))
        return taken

    @staticmethod
    def attribute(key: str) -> contextvars.Token[str | None]:
        """From here on in this context (and threads that copy it), output is `key`'s."""
        return _attempt.set(key)

    @staticmethod
    def detach(token: contextvars.Token[str | None]) -> None:
        _attempt.reset(token)


class _Tee:
    """A text stream that writes through to the process's own and to the running attempt's output."""

    def __init__(self, original: TextIO, stream: str, output: AttemptOutput) -> None:
        self._original = original
        self._stream = stream
        self._output = output

    def write(self, text: str) -> int:
        self._output.write(self._stream, text)
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self._original, name)


def capture() -> AttemptOutput:
    """Replace `sys.stdout` and `sys.stderr` with tees into one `AttemptOutput` (once per process)."""
    output = AttemptOutput()
    sys.stdout = _Tee(sys.stdout, "stdout", output)
    sys.stderr = _Tee(sys.stderr, "stderr", output)
    return output
