"""What the gateway has yet to send one agent: assignments, aborts and acknowledgements, in order, bounded.

An agent that stops reading (a broken one, or the hostile holder of an agent token) would otherwise have them
buffered without end: its heartbeat does not end a socket it keeps writing to, and every batch of events it sends
is answered. Past `AGENT_UNREAD_LIMIT` unsent bytes its connection is cut off instead (`cut_off_with`), as an agent
whose connection dropped. Nothing is lost: its attempts stay placed for the lease, an agent that reconnects says
what it runs and whatever it was never sent is placed again (`AgentSessions._adopt`), and events it sent that were
not acknowledged are sent again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from flyte._env import env_int

AGENT_UNREAD_LIMIT = env_int("FLYTE_AGENT_UNREAD_LIMIT", 64 * 1024 * 1024)
"""Bytes of messages an agent socket may leave unread before the gateway cuts it off (tests lower it)."""


class AgentOutbox:
    def __init__(self, limit: int | None = None) -> None:
        self._messages: deque[str] = deque()
        self._ready = asyncio.Event()
        self._unsent = 0
        """Bytes put and not yet written to the socket, the one being written included."""
        self._limit = AGENT_UNREAD_LIMIT if limit is None else limit
        self._cut_off: Callable[[], None] | None = None
        self.overflowed = False
        """The agent left more than the limit unread: nothing more is sent, and its connection is cut off."""

    def put_nowait(self, message: str) -> None:
        if self.overflowed:
            return
        self._unsent += len(message)
        if self._unsent > self._limit:
            self.overflowed = True
            self._messages.clear()
            if self._cut_off is not None:
                self._cut_off()
        else:
            self._messages.append(message)
        self._ready.set()

    def cut_off_with(self, cut_off: Callable[[], None]) -> None:
        """What ends the agent's connection once it leaves too much unread (at once, if it already has)."""
        self._cut_off = cut_off
        if self.overflowed:
            cut_off()

    async def next(self) -> str | None:
        """The next message to send, once there is one; None once the agent left too much unread."""
        while not self._messages and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        return None if self.overflowed else self._messages.popleft()

    def sent(self, message: str) -> None:
        """`message`, from `next`, is written to the socket."""
        self._unsent -= len(message)

    def empty(self) -> bool:
        return not self._messages

    def get_nowait(self) -> str:
        """The next message, taken as sent (what the gateway would send, read without a socket); IndexError if none."""
        message = self._messages.popleft()
        self.sent(message)
        return message
