"""The gateway keeps the embedded store's history bounded, and a watch older than it re-lists instead of missing."""

from __future__ import annotations

import pytest

from gateway._app import compact_once
from gateway.store import Compacted
from gateway.store._sqlite import SqliteStore


async def test_compaction_keeps_only_recent_history() -> None:
    store = SqliteStore(":memory:")
    try:
        for i in range(20):
            await store.put(f"/flyte/actions/r/a{i}", b"x")
        mark = await compact_once(store, 0, kept=5)
        assert mark == await store.revision() - 5
        assert await compact_once(store, mark, kept=5) == mark, "nothing new: no second compaction"

        async def first_batch(start: int) -> list[str]:
            async for batch in store.watch("/flyte/actions/", start):
                return [event.key for event in batch]
            return []

        with pytest.raises(Compacted):
            await first_batch(1)
        kept: list[str] = []
        async for batch in store.watch("/flyte/actions/", mark + 1):
            kept += [event.key for event in batch]
            if len(kept) >= 5:
                break
        assert kept == [f"/flyte/actions/r/a{i}" for i in range(15, 20)], "the last five writes are still there"
    finally:
        await store.close()
