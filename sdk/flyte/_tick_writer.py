"""Lines to a stream, sent once per turn of the event loop.

A pool worker tells its agent, per attempt, that it adopted it, that its result is on its way, and that it is done,
one line each. In a wide fan-out many attempts do so in the same turn (their results answered together by one group
commit), and each line was a system call of its own, and a wake-up of the agent reading it. Here the lines of a turn
leave in one write, at the end of the turn: in order, and before anything the turn started runs (a child's task,
started after its `adopt` was written, runs after the write).
"""

from __future__ import annotations

import asyncio


class TickWriter:
    """Buffers `write`s for the rest of the loop's turn, then writes them to `writer` at once."""

    def __init__(self, writer: asyncio.StreamWriter):
        self._writer = writer
        self._lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(line)

    def flush(self) -> None:
        """Write what this turn buffered now (at the latest, the turn's end does)."""
        if self._lines:
            lines, self._lines = self._lines, []
            self._writer.write(b"".join(lines))

    async def drain(self) -> None:
        """`StreamWriter.drain`: waits while the socket takes no more of what was written. What this turn buffered
        is not written first: a burst of lines, each followed by a drain, still leaves in one write."""
        await self._writer.drain()
