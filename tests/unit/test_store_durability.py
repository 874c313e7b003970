"""Durability per transaction (`gateway.store`): the SQLite file store fsyncs a durable commit (synchronous=FULL) and
not one marked `durable=False` (NORMAL), both are committed, and `sync` makes what was not durable durable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Compare, Put
from gateway.store._sqlite import SqliteStore

_NORMAL, _FULL = 1, 2


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "store.db"))
    yield s
    await s.close()


def synchronous(store: SqliteStore) -> int:
    """The mode the store's last commit was made in: it is set before a transaction begins and kept until the next."""
    mode: int = store._db.execute("PRAGMA synchronous").fetchone()[0]
    return mode


async def test_each_commit_is_made_in_the_mode_it_asks_for_and_both_are_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    s = SqliteStore(path)
    try:
        marked = await s.txn([Compare("/placed", 0)], [Put("/placed", b"p")], durable=False)
        assert marked.succeeded
        assert synchronous(s) == _NORMAL
        ended = await s.txn([Compare("/ended", 0)], [Put("/ended", b"e")])
        assert ended.succeeded
        assert synchronous(s) == _FULL
        assert ended.revision == marked.revision + 1
        # Every other write stays durable after a non-durable one.
        await s.txn([], [Put("/again", b"a")], durable=False)
        await s.put("/put", b"x")
        assert synchronous(s) == _FULL
    finally:
        await s.close()
    reopened = SqliteStore(path)
    try:
        kvs, _ = await reopened.range("/")
        assert {kv.key: kv.value for kv in kvs} == {"/placed": b"p", "/ended": b"e", "/again": b"a", "/put": b"x"}
    finally:
        await reopened.close()


async def test_sync_commits_durably_only_after_a_write_that_was_not(store: SqliteStore) -> None:
    def header_version() -> int:
        version: int = store._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    await store.txn([], [Put("/a", b"1")])
    before = header_version()
    await store.sync()
    assert header_version() == before  # everything was durable: no commit, no fsync
    revision = (await store.txn([], [Put("/b", b"2")], durable=False)).revision
    await store.sync()
    assert header_version() == before + 1
    assert synchronous(store) == _FULL
    assert await store.revision() == revision  # a sync is no write of the store's: no revision, no watch event
    await store.sync()
    assert header_version() == before + 1
