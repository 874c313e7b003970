"""Durability per transaction (`gateway.store`): the SQLite file store fsyncs a durable commit (synchronous=FULL) and
not one marked `durable=False` (NORMAL), both are committed, and `sync` makes what was not durable durable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.store import Compare, Lease, Put
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


def header_version(store: SqliteStore) -> int:
    """Bumped by each commit `sync` makes (a durable commit of nothing else)."""
    version: int = store._db.execute("PRAGMA user_version").fetchone()[0]
    return version


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
    await store.txn([], [Put("/a", b"1")])
    before = header_version(store)
    await store.sync()
    assert header_version(store) == before  # everything was durable: no commit, no fsync
    revision = (await store.txn([], [Put("/b", b"2")], durable=False)).revision
    await store.sync()
    assert header_version(store) == before + 1
    assert synchronous(store) == _FULL
    assert await store.revision() == revision  # a sync is no write of the store's: no revision, no watch event
    await store.sync()
    assert header_version(store) == before + 1


_DURABLE_WRITES: dict[str, Callable[[SqliteStore, int, Lease], Awaitable[object]]] = {
    "txn": lambda store, revision, lease: store.txn([], [Put("/ended", b"e")]),
    "put": lambda store, revision, lease: store.put("/ended", b"e"),
    "delete": lambda store, revision, lease: store.delete("/earlier"),
    "grant_lease": lambda store, revision, lease: store.grant_lease(30),
    "keepalive": lambda store, revision, lease: store.keepalive(lease.id),
    "revoke": lambda store, revision, lease: store.revoke(lease.id),
    "compact": lambda store, revision, lease: store.compact(revision),
}


@pytest.mark.parametrize("write", sorted(_DURABLE_WRITES))
async def test_a_durable_write_of_any_kind_leaves_sync_nothing_to_do(store: SqliteStore, write: str) -> None:
    await store.put("/earlier", b"1")
    lease = await store.grant_lease(30)
    revision = (await store.txn([], [Put("/placed", b"p")], durable=False)).revision
    await _DURABLE_WRITES[write](store, revision, lease)
    before = header_version(store)
    await store.sync()
    # The durable write fsynced the WAL, and with it the write before it: one fsync more would buy nothing.
    assert header_version(store) == before


async def test_a_store_opened_on_a_file_syncs_what_an_earlier_process_left_unsynced(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    killed = SqliteStore(path)
    try:
        await killed.txn([], [Put("/placed", b"p")], durable=False)
        # Left open, as by a process that was killed: nothing checkpointed or synced on its way out.
        reopened = SqliteStore(path)
        try:
            before = header_version(reopened)
            await reopened.sync()
            assert header_version(reopened) == before + 1
            await reopened.sync()
            assert header_version(reopened) == before + 1
        finally:
            await reopened.close()
    finally:
        await killed.close()
