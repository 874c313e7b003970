"""`flyte._tick_writer.TickWriter` on a real event loop and socket: the lines of one turn of the loop leave in one
write at the turn's end, in order, before a task the turn started runs; a drain between them does not split them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest

from flyte._tick_writer import TickWriter


class Counted:
    """A real stream writer, with the chunks written to it noted."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Counted, asyncio.StreamReader]]:
    ours, theirs = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=ours)
    reader, other = await asyncio.open_connection(sock=theirs)
    yield Counted(writer), reader
    writer.close()
    other.close()


async def test_a_turns_lines_leave_in_one_write_in_order(pair: tuple[Counted, asyncio.StreamReader]) -> None:
    counted, reader = pair
    lines = TickWriter(cast(asyncio.StreamWriter, counted))
    started: list[int] = []

    async def child() -> None:
        started.append(len(counted.chunks))

    lines.write(b"adopt\n")
    task = asyncio.create_task(child())  # as a pool worker starts a child right after saying it adopted it
    lines.write(b"done 1\n")
    await lines.drain()  # a drain between lines of one turn does not split them
    lines.write(b"done 2\n")
    assert counted.chunks == []  # nothing is written before the turn ends
    await task
    assert started == [1], "the task the turn started ran after the turn's write"
    assert counted.chunks == [b"adopt\ndone 1\ndone 2\n"]
    assert [await reader.readline() for _ in range(3)] == [b"adopt\n", b"done 1\n", b"done 2\n"]
    # The next turn's lines are a write of their own.
    lines.write(b"done 3\n")
    await asyncio.sleep(0)
    assert counted.chunks[1:] == [b"done 3\n"]
    assert await reader.readline() == b"done 3\n"


async def test_flush_writes_at_once(pair: tuple[Counted, asyncio.StreamReader]) -> None:
    counted, reader = pair
    lines = TickWriter(cast(asyncio.StreamWriter, counted))
    lines.write(b"last\n")
    lines.flush()
    assert counted.chunks == [b"last\n"]
    await asyncio.sleep(0)
    assert counted.chunks == [b"last\n"], "the turn's end finds nothing left to write"
    assert await reader.readline() == b"last\n"
