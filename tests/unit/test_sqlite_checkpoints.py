"""The SQLite store's checkpoints (`gateway/store/_checkpoints.py`): commits do not copy the write-ahead log into the
database file by themselves (that held the gateway's event loop for milliseconds); a thread of the store's own does,
every so many bytes, the writer finishing what it copied between two commits so that the log starts again from its
beginning, and closing the store stops the thread and leaves no log behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.store import Put, _checkpoints
from gateway.store._sqlite import SqliteStore
from tests.waiting import async_assert_eventually

VALUE = b"v" * 16_384


def size(path: str) -> int:
    """A file's bytes, 0 when it is not there."""
    return os.stat(path).st_size if os.path.exists(path) else 0


async def test_commits_leave_checkpoints_to_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoints, "CHECKPOINT_BYTES", 2**40)  # the thread is never woken
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    try:
        before = size(path)
        # ~13 MB into the log: SQLite's own checkpoint would have copied it into the file after the first 4 MB.
        for i in range(400):
            await store.txn([], [Put(f"/k/{i}", VALUE)], durable=False)  # no fsync: the test stays quick
        assert size(path) == before
        assert size(path + "-wal") > 10 * 2**20
    finally:
        await store.close()


async def test_the_thread_checkpoints_every_so_many_bytes_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_checkpoints, "CHECKPOINT_BYTES", 256 * 2**10)
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    try:
        before = size(path)
        for i in range(200):
            await store.txn([], [Put(f"/k/{i}", VALUE)], durable=False)
        # The log's pages reach the file while the writer goes on, copied by the thread.
        await async_assert_eventually(lambda: size(path) > before + 2 * 2**20)
        assert store._checkpoints is not None
        assert store._checkpoints.rounds >= 1
        kvs, _ = await store.range("/k/")
        assert len(kvs) == 200
        assert all(kv.value == VALUE for kv in kvs)
    finally:
        await store.close()
    # The thread's connection closed first: closing the writer's, the last one, checkpointed and removed the log.
    assert size(path + "-wal") == 0
    reopened = SqliteStore(path)
    try:
        kvs, _ = await reopened.range("/k/")
        assert sorted(kv.key for kv in kvs) == sorted(f"/k/{i}" for i in range(200))
    finally:
        await reopened.close()


async def test_the_log_stays_short_while_writes_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite starts the log again only at a write that finds all of it copied: a thread copying while the writer
    # appends never got there, and the log grew as long as the writes went on.
    monkeypatch.setattr(_checkpoints, "CHECKPOINT_BYTES", 512 * 2**10)
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    try:
        longest = 0
        for i in range(2400):  # ~40 MB into the log, kv and events
            await store.txn([], [Put(f"/k/{i}", b"v" * 8192)], durable=False)
            if i % 50 == 0:
                longest = max(longest, size(path + "-wal"))
        assert longest < 16 * 2**20
    finally:
        await store.close()
