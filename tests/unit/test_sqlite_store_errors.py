"""The SQLite store reports SQLite's failures as the store's errors: a full disk as `QuotaExceeded`, anything else as
`StoreUnavailable`, so the gateway answers them as it does an unreachable etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Put, QuotaExceeded, StoreUnavailable
from gateway.store._sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "store.db"))
    yield s
    await s.close()


async def test_a_full_disk_is_a_quota_error_and_leaves_nothing_half_written(store: SqliteStore) -> None:
    revision = await store.put("/small", b"x")
    pages: int = store._db.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own "database or disk is full", as a disk that has no room left would give it.
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(QuotaExceeded, match="disk is full"):
        await store.txn([], [Put(f"/big/{n}", b"y" * 4096) for n in range(8)])
    assert await store.revision() == revision
    assert (await store.range("/big/"))[0] == []


async def test_a_database_that_stopped_working_is_unavailable(store: SqliteStore) -> None:
    await store.put("/a", b"1")
    store._db.close()
    with pytest.raises(StoreUnavailable, match="cannot be used"):
        await store.get("/a")
    with pytest.raises(StoreUnavailable, match="cannot be used"):
        await store.put("/b", b"2")
