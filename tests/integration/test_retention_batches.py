"""Retention's parts on the embedded store in-process: durations, which runs are expired, deletion in batches that
leave the loop free, and the blob sweep's grace period."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from flyte._wire import ActionSummary, Phase, RunSummary, WireValue
from gateway._blobs import LocalBlobStore
from gateway._keys import action_key, log_chunk_key, run_key
from gateway._retention import BlobMarker, Retention, collect_blobs, delete_run, parse_duration, parse_project_retention
from gateway.store._sqlite import SqliteStore


def _run(name: str, phase: Phase, ended_at: float | None, project: str = "p") -> RunSummary:
    return RunSummary(name=name, task="t", phase=phase, project=project, domain="d", created_at=0.0, ended_at=ended_at)


def test_durations_and_their_errors() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_project_retention(["a=1h", "b = 2m"]) == {"a": 3600, "b": 120}
    for bad in ("", "-1d", "0s", "3 years", "d"):
        with pytest.raises(ValueError, match="retention is a positive number"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="NAME=DURATION"):
        parse_project_retention(["scratch"])


def test_only_ended_runs_past_their_projects_retention_expire() -> None:
    retention = Retention(runs=100.0, projects={"short": 10.0})
    now = 1_000.0
    assert retention.expired(_run("a", Phase.SUCCEEDED, 850.0), now)
    assert not retention.expired(_run("b", Phase.SUCCEEDED, 950.0), now), "inside the retention"
    assert not retention.expired(_run("c", Phase.RUNNING, None), now), "running runs never expire"
    assert retention.expired(_run("d", Phase.FAILED, 980.0, project="short"), now)
    assert not Retention(projects={"short": 1.0}).expired(_run("e", Phase.ABORTED, 0.0), now), "no default: kept"
    assert Retention(runs=3600.0).interval == 600.0
    assert Retention(runs=2.0).interval == 1.0


async def test_a_big_run_is_deleted_in_batches_while_the_loop_stays_free() -> None:
    store = SqliteStore(":memory:")
    try:
        run = _run("big", Phase.SUCCEEDED, 0.0)
        await store.put(run_key("big"), run.model_dump_json().encode())
        for i in range(450):
            await store.put(f"/flyte/spans/big/{i:05d}", b"span")
            await store.put(f"/flyte/spans/bigger/{i:05d}", b"another run's span")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        before = await store.revision()
        deleted = await delete_run(store, run)
        task.cancel()
        assert deleted == 451
        assert await store.revision() - before == 5, "451 keys in five transactions of at most 100"
        assert ticks >= 5, "the loop ran between batches"
        assert (await store.range("/flyte/spans/big/"))[0] == []
        assert len((await store.range("/flyte/spans/bigger/"))[0]) == 450, "a run whose name extends it stays"
        assert await delete_run(store, run) == 0, "repeating is harmless"
    finally:
        await store.close()


async def test_the_sweep_spares_young_and_referenced_blobs(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    try:
        root = tmp_path / "blobs"

        def blob(data: bytes, age: float) -> str:
            digest = hashlib.sha256(data).hexdigest()
            path = root / digest[:2] / digest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (time.time() - age, time.time() - age))
            return digest

        old_orphan, young_orphan = blob(b"old", 100), blob(b"young", 0)
        inner = blob(b"inner", 100)
        outer = blob(f'{{"files": [["x", "{inner}"]]}}'.encode(), 100)
        await store.put("/flyte/tasks/p/d/env/v1", f'{{"bundle_digest": "{outer}"}}'.encode())
        assert await collect_blobs(store, BlobMarker(LocalBlobStore(root, store)), grace=10) == 1
        remaining = {p.name for p in root.glob("*/*")}
        assert remaining == {young_orphan, inner, outer}
        assert old_orphan not in remaining
    finally:
        await store.close()


async def test_a_run_takes_the_cache_entries_it_wrote_and_leaves_the_others() -> None:
    store = SqliteStore(":memory:")
    try:
        run = _run("cached", Phase.SUCCEEDED, 0.0)
        output = WireValue(kind="json", digest="d" * 64, json_text="1")
        await store.put(run_key("cached"), run.model_dump_json().encode())
        for name, key, hit in (
            ("a0", "mine", False),
            ("a" + "1" * 20, "rewritten", False),
            ("a" + "2" * 20, "hit", True),
        ):
            action = ActionSummary(
                name=name,
                parent=None,
                task="t",
                phase=Phase.SUCCEEDED,
                run="cached",
                cache_key=key,
                output=output,
                cached=hit,
            )
            await store.put(action_key("cached", name), action.model_dump_json().encode())
            await store.put(f"/flyte/cache/{key}", output.model_dump_json().encode())
        await store.put("/flyte/cache/rewritten", b'{"another": "output"}')
        await delete_run(store, run)
        left = sorted(kv.key for kv in (await store.range("/flyte/cache/"))[0])
        assert left == ["/flyte/cache/hit", "/flyte/cache/rewritten"], "only the entry the run computed goes"
    finally:
        await store.close()


async def test_a_run_takes_its_logs_and_leaves_another_runs() -> None:
    store = SqliteStore(":memory:")
    try:
        run = _run("logged", Phase.SUCCEEDED, 0.0)
        await store.put(run_key("logged"), run.model_dump_json().encode())
        for name in ("logged", "logged2"):
            for attempt in (1, 2):
                await store.put(log_chunk_key(name, "a0", attempt, "0001"), b"a line\n")
        assert await delete_run(store, run) == 3
        left = [kv.key for kv in (await store.range("/flyte/logs/"))[0]]
        assert left == [log_chunk_key("logged2", "a0", 1, "0001"), log_chunk_key("logged2", "a0", 2, "0001")]
    finally:
        await store.close()
