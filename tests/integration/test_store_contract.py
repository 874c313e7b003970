"""One contract for every `Store`: the same tests run against in-memory SQLite, a SQLite file and a real etcd.

Each test works under its own key prefix, so the shared etcd needs no reset between tests; revision arithmetic
holds because tests run one at a time and every lease a test makes is gone (revoked or expired) when it ends.
Durability (reopen, SIGKILL) and quota tests are for the SQLite file store only, at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from etcd_process import EtcdProcess, _free_port

import gateway.store._sqlite as sqlite_module
from gateway.store import (
    MAX_TXN_OPS,
    Compacted,
    Compare,
    Delete,
    EventType,
    InvalidTxn,
    LeaseNotFound,
    Put,
    QuotaExceeded,
    Store,
    StoreError,
    StoreUnavailable,
    WatchEvent,
    open_store,
)
from gateway.store._sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = SqliteStore(":memory:")
    elif request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "store.db"))
    else:
        from gateway.store._etcd import EtcdStore

        server: EtcdProcess = request.getfixturevalue("etcd_server")
        s = EtcdStore(server.host, server.port)
    try:
        yield s
    finally:
        await s.close()


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


class Watching:
    """A watch with a buffer, so tests can take exactly n events whatever the batching."""

    def __init__(self, events: AsyncIterator[list[WatchEvent]]):
        self.events = events
        self.buffer: list[WatchEvent] = []

    async def take(self, n: int, within: float = 5.0) -> list[WatchEvent]:
        async with asyncio.timeout(within):
            while len(self.buffer) < n:
                self.buffer.extend(await anext(self.events))
        got, self.buffer = self.buffer[:n], self.buffer[n:]
        return got


@contextlib.asynccontextmanager
async def watching(store: Store, prefix: str, start: int) -> AsyncIterator[Watching]:
    events = store.watch(prefix, start)
    try:
        yield Watching(events)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def brief(events: list[WatchEvent], prefix: str) -> list[tuple[str, str, bytes]]:
    return [(e.type.value, e.key.removeprefix(prefix), e.value) for e in events]


# -- keys and revisions -------------------------------------------------------------------------------------------


async def test_get_put_delete(store: Store, key_prefix: str) -> None:
    k = key_prefix + "k"
    assert await store.get(k) is None
    r1 = await store.put(k, b"v1")
    kv = await store.get(k)
    assert kv is not None
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (k, b"v1", r1, r1, 1, 0)
    r2 = await store.put(k, b"v2")
    kv = await store.get(k)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"v2", r1, r2, 2)
    r3 = await store.delete(k)
    assert r3 == r2 + 1
    assert await store.get(k) is None
    assert await store.delete(k) == 0
    assert await store.revision() == r3, "deleting a missing key is not a write"
    r4 = await store.put(k, b"")
    kv = await store.get(k)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.version) == (b"", r4, 1), "a re-created key starts over"


async def test_range_by_prefix_order_limit_and_boundaries(store: Store, key_prefix: str) -> None:
    for name in ["a/2", "a/10", "ab", "a/1", "a", "a/é", "a/z", "b/1"]:
        await store.put(key_prefix + name, name.encode())
    kvs, rev = await store.range(key_prefix + "a/")
    assert [kv.key.removeprefix(key_prefix) for kv in kvs] == ["a/1", "a/10", "a/2", "a/z", "a/é"]
    assert rev == await store.revision()
    kvs, _ = await store.range(key_prefix + "a/", limit=2)
    assert [kv.key.removeprefix(key_prefix) for kv in kvs] == ["a/1", "a/10"]
    kvs, _ = await store.range(key_prefix)
    assert [kv.key.removeprefix(key_prefix) for kv in kvs] == ["a", "a/1", "a/10", "a/2", "a/z", "a/é", "ab", "b/1"]
    assert [kv.value for kv in kvs][:2] == [b"a", b"a/1"]
    assert (await store.range(key_prefix + "c"))[0] == []


async def test_revisions_one_per_write_and_per_txn(store: Store, key_prefix: str) -> None:
    r0 = await store.revision()
    r1 = await store.put(key_prefix + "x", b"1")
    assert r1 == r0 + 1
    result = await store.txn([], [Put(key_prefix + f"t{i}", b"t") for i in range(5)] + [Delete(key_prefix + "x")])
    assert result.succeeded
    assert result.revision == r1 + 1 == await store.revision()
    kvs, _ = await store.range(key_prefix + "t")
    assert {kv.mod_revision for kv in kvs} == {result.revision}
    # A failing transaction with no failure ops, and one that only deletes missing keys, write nothing.
    missed = await store.txn([Compare(key_prefix + "t0", 1)], [Put(key_prefix + "y", b"")])
    assert not missed.succeeded
    assert missed.revision == result.revision
    nothing = await store.txn([], [Delete(key_prefix + "nope")])
    assert nothing.succeeded
    assert nothing.revision == result.revision == await store.revision()


async def test_snapshot_pages_every_key_at_one_revision(store: Store, key_prefix: str) -> None:
    await store.txn([], [Put(f"{key_prefix}k{i:03d}", str(i).encode()) for i in range(25)])
    await store.put(key_prefix + "z", b"last")
    await store.put(key_prefix[:-1] + "-other/k", b"not under the prefix")
    before = await store.revision()
    pages: list[list[str]] = []
    revisions = set()
    async for revision, kvs in store.snapshot(key_prefix, page=10):
        if not pages:
            # Written after the snapshot began: not in any page, on either store.
            await store.put(key_prefix + "k000", b"changed")
            await store.put(key_prefix + "new", b"new")
            await store.delete(key_prefix + "z")
        pages.append([kv.key.removeprefix(key_prefix) for kv in kvs])
        revisions.add(revision)
        if kvs[0].key == key_prefix + "k000":
            assert kvs[0].value == b"0"
    assert revisions == {before}
    assert [len(p) for p in pages] == [10, 10, 6]
    assert [key for p in pages for key in p] == [f"k{i:03d}" for i in range(25)] + ["z"]
    assert [p async for p in store.snapshot(key_prefix + "nothing/")] == []
    with pytest.raises(ValueError, match="at least one key"):
        await anext(store.snapshot(key_prefix, page=0))


# -- transactions ------------------------------------------------------------------------------------------------


async def test_txn_compare_and_swap(store: Store, key_prefix: str) -> None:
    k, other = key_prefix + "k", key_prefix + "other"
    created = await store.txn([Compare(k, 0)], [Put(k, b"v1")])
    assert created.succeeded
    assert created.current == {k: None}
    again = await store.txn([Compare(k, 0)], [Put(k, b"clobber")])
    assert not again.succeeded
    cur = again.current[k]
    assert cur is not None
    assert (cur.value, cur.mod_revision) == (b"v1", created.revision)
    assert again.revision == created.revision

    swapped = await store.txn([Compare(k, created.revision)], [Put(k, b"v2")])
    assert swapped.succeeded
    assert swapped.revision == created.revision + 1
    before = swapped.current[k]
    assert before is not None
    assert before.value == b"v1", "current is the state the compares saw"

    stale = await store.txn([Compare(k, created.revision)], [Put(k, b"v3")], [Put(other, b"lost")])
    assert not stale.succeeded
    cur = stale.current[k]
    assert cur is not None
    assert (cur.value, cur.mod_revision, cur.version) == (b"v2", swapped.revision, 2)
    assert stale.revision == swapped.revision + 1, "failure ops are a write"
    kv = await store.get(other)
    assert kv is not None
    assert kv.value == b"lost"
    assert kv.mod_revision == stale.revision

    # Several compares: all must hold.
    other_rev = stale.revision
    both = await store.txn([Compare(k, swapped.revision), Compare(other, other_rev)], [Delete(k), Delete(other)])
    assert both.succeeded
    assert await store.get(k) is None
    assert await store.get(other) is None
    one_wrong = await store.txn([Compare(k, 0), Compare(other, 12345)], [Put(k, b"no")])
    assert not one_wrong.succeeded
    assert one_wrong.current == {k: None, other: None}
    assert await store.get(k) is None


async def test_a_txn_that_need_not_be_durable_is_a_write_like_any_other(store: Store, key_prefix: str) -> None:
    k = key_prefix + "k"
    marked = await store.txn([Compare(k, 0)], [Put(k, b"placed")], durable=False)
    assert marked.succeeded
    lost = await store.txn([Compare(k, 0)], [Put(k, b"again")], durable=False)
    assert not lost.succeeded
    ended = await store.txn([Compare(k, marked.revision)], [Put(k, b"ended")])
    assert ended.revision == marked.revision + 1
    await store.sync()
    assert await store.revision() == ended.revision, "a sync writes nothing of the store's"
    async with watching(store, key_prefix, marked.revision) as events:
        assert [(e.value, e.mod_revision) for e in await events.take(2)] == [
            (b"placed", marked.revision),
            (b"ended", ended.revision),
        ]


async def test_txn_op_limit_and_duplicate_keys(store: Store, key_prefix: str) -> None:
    r0 = await store.revision()
    too_many = [Put(key_prefix + f"{i:03d}", b"") for i in range(MAX_TXN_OPS + 1)]
    with pytest.raises(InvalidTxn) as info:
        await store.txn([], too_many)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidTxn):
        await store.txn([Compare(key_prefix + f"{i}", 0) for i in range(MAX_TXN_OPS + 1)], [])
    with pytest.raises(InvalidTxn):
        await store.txn([], [Put(key_prefix + "dup", b"1"), Delete(key_prefix + "dup")])
    assert await store.revision() == r0
    assert (await store.range(key_prefix))[0] == []

    # A full batch: as many compares as puts, the gateway's group commit. `current` still has every key.
    keys = [key_prefix + f"{i:03d}" for i in range(MAX_TXN_OPS)]
    full = await store.txn([Compare(k, 0) for k in keys], [Put(k, b"x") for k in keys])
    assert full.succeeded
    assert full.revision == r0 + 1
    assert full.current == dict.fromkeys(keys)
    lost = await store.txn([Compare(k, 0) for k in keys], [], [Put(k, b"y") for k in keys])
    assert not lost.succeeded
    assert lost.revision == r0 + 2
    assert all((kv := lost.current[k]) is not None and kv.value == b"x" for k in keys), "pre-state, not failure ops"


# -- leases ------------------------------------------------------------------------------------------------------


async def test_lease_expiry_deletes_keys(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(0.5)
    assert lease.ttl >= 0.5
    r = await store.put(key_prefix + "a", b"1", lease=lease.id)
    await store.put(key_prefix + "b", b"2", lease=lease.id)
    await store.put(key_prefix + "keep", b"3")
    kv = await store.get(key_prefix + "a")
    assert kv is not None
    assert kv.lease == lease.id
    async with watching(store, key_prefix, r) as events:
        await events.take(3)

        async def gone() -> bool:
            return not any(kv.lease for kv in (await store.range(key_prefix))[0])

        await eventually(gone, within=lease.ttl + 5)
        deletes = await events.take(2)
        assert brief(deletes, key_prefix) == [("delete", "a", b""), ("delete", "b", b"")]
        assert deletes[0].mod_revision == deletes[1].mod_revision, "a lease's keys go in one revision"
    assert await store.get(key_prefix + "keep") is not None
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.put(key_prefix + "late", b"", lease=lease.id)
    with pytest.raises(LeaseNotFound):
        await store.txn([], [Put(key_prefix + "late", b"", lease=lease.id)])
    assert await store.get(key_prefix + "late") is None


async def test_keepalive_keeps_keys_and_revoke_deletes_them(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(0.5)
    k = key_prefix + "held"
    r = await store.put(k, b"", lease=lease.id)
    # Renew at a quarter of the TTL for two whole TTLs: without the renewals the key would be gone by then.
    until = time.monotonic() + 2 * lease.ttl
    while time.monotonic() < until:
        await store.keepalive(lease.id)
        assert await store.get(k) is not None
        await asyncio.sleep(lease.ttl / 4)  # pacing the renewals, not waiting for a condition
    revoked_at = await store.revision()
    await store.revoke(lease.id)
    assert await store.get(k) is None, "revoke deletes the keys before it returns"
    async with watching(store, k, r) as events:
        put, delete = await events.take(2)
    assert (put.type, delete.type) == (EventType.PUT, EventType.DELETE)
    assert delete.mod_revision == revoked_at + 1
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.revoke(lease.id)


async def test_put_without_lease_detaches_key(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(5.0)
    k = key_prefix + "k"
    await store.put(k, b"1", lease=lease.id)
    await store.put(k, b"2")
    await store.revoke(lease.id)
    kv = await store.get(k)
    assert kv is not None
    assert kv.lease == 0
    assert kv.value == b"2"


# -- watches -----------------------------------------------------------------------------------------------------


async def test_watch_replays_history_then_streams_live_changes(store: Store, key_prefix: str) -> None:
    p = key_prefix + "a/"
    start = await store.put(p + "1", b"one")
    await store.put(key_prefix + "ab", b"not under a/")
    await store.put(p + "2", b"two")
    await store.delete(p + "1")
    async with watching(store, p, start) as events:
        history = await events.take(3)
        assert brief(history, key_prefix) == [("put", "a/1", b"one"), ("put", "a/2", b"two"), ("delete", "a/1", b"")]
        assert [e.mod_revision for e in history] == [start, start + 2, start + 3]
        await store.put(key_prefix + "b", b"elsewhere")
        txn = await store.txn([], [Put(p + "3", b"three"), Put(p + "4", b"four"), Delete(p + "2")])
        live = await events.take(3)
        assert brief(live, key_prefix) == [("put", "a/3", b"three"), ("put", "a/4", b"four"), ("delete", "a/2", b"")]
        assert {e.mod_revision for e in live} == {txn.revision}


async def test_watch_from_now_sees_only_new_changes(store: Store, key_prefix: str) -> None:
    await store.put(key_prefix + "old", b"")
    async with watching(store, key_prefix, 0) as events:
        # "Now" is when the watch starts, which on etcd is a round trip away: write until the first event shows.
        first = asyncio.ensure_future(events.take(1))
        written = 0
        async with asyncio.timeout(5):
            while not first.done():
                await store.put(key_prefix + f"new{written}", b"")
                written += 1
                await asyncio.wait({first}, timeout=0.05)
        assert first.result()[0].key.startswith(key_prefix + "new")


async def test_watch_resumes_after_cancel_without_missing_anything(store: Store, key_prefix: str) -> None:
    start = await store.revision() + 1
    for i in range(3):
        await store.put(key_prefix + f"{i}", b"")
    async with watching(store, key_prefix, start) as events:
        seen = await events.take(3)
    for i in range(3, 6):
        await store.put(key_prefix + f"{i}", b"")
    async with watching(store, key_prefix, seen[-1].mod_revision + 1) as events:
        rest = await events.take(3)
    assert [e.key.removeprefix(key_prefix) for e in seen + rest] == [str(i) for i in range(6)]


async def test_watch_keeps_order_under_concurrent_writes_and_slow_consumer(
    store: Store, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny in-memory backlog forces the SQLite store's fall-back from handing over events to reading the log.
    monkeypatch.setattr(sqlite_module, "_PENDING_LIMIT", 3)
    n = 60
    start = await store.revision() + 1
    async with watching(store, key_prefix, start) as events:
        first = await asyncio.gather(*(store.put(key_prefix + f"{i:03d}", b"") for i in range(n // 2)))
        batch = await events.take(1)  # the watcher is live now; the rest arrive while it is not consuming
        rest = [await store.put(key_prefix + f"{i:03d}", b"") for i in range(n // 2, n)]
        got = batch + await events.take(n - 1)
    assert sorted(first) + rest == [e.mod_revision for e in got], "every revision, in order, once"


async def test_compaction(store: Store, key_prefix: str) -> None:
    k = key_prefix + "k"
    r1 = await store.put(k, b"1")
    r2 = await store.put(k, b"2")
    r3 = await store.put(k, b"3")
    await store.compact(r2)
    with pytest.raises(Compacted) as info:
        async with watching(store, key_prefix, r1) as events:
            await events.take(1)
    assert info.value.compact_revision == r2 - 1, "history is gone up to and including this revision"
    async with watching(store, key_prefix, r2) as events:
        kept = await events.take(2)
    assert [(e.value, e.mod_revision) for e in kept] == [(b"2", r2), (b"3", r3)]
    await store.compact(r1)  # older than the last compaction: nothing to do
    with pytest.raises(StoreError):
        await store.compact(await store.revision() + 10)
    kv = await store.get(k)
    assert kv is not None
    assert kv.version == 3, "compaction keeps the live keys"


# -- availability, URLs ------------------------------------------------------------------------------------------


async def test_closing_the_store_ends_its_watches(store: Store, key_prefix: str) -> None:
    start = await store.put(key_prefix + "k", b"")
    async with watching(store, key_prefix, start) as events:
        await events.take(1)
        pending = asyncio.ensure_future(anext(events.events))
        await asyncio.wait({pending}, timeout=0.05)  # let the watch block waiting for changes
        await store.close()
        async with asyncio.timeout(5):
            with pytest.raises(StopAsyncIteration):
                await pending


async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.revision()


async def test_unreachable_etcd_is_unavailable_and_names_the_address() -> None:
    from gateway.store._etcd import EtcdStore

    port = _free_port()
    s = await open_store(f"etcd://127.0.0.1:{port}")
    assert isinstance(s, EtcdStore)
    try:
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            await s.revision()
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            await s.put("/k", b"")
    finally:
        await s.close()


async def test_open_store_urls(tmp_path: Path) -> None:
    for url in ("memory", f"sqlite:{tmp_path / 'x.db'}"):
        s = await open_store(url)
        assert isinstance(s, SqliteStore)
        await s.close()
    for bad in ("", "sqlite:", "etcd://host", "etcd://host:notaport", "postgres://x", "mem"):
        with pytest.raises(ValueError, match="sqlite:PATH"):
            await open_store(bad)


# -- SQLite file: durability and quota ------------------------------------------------------------------------------


async def test_sqlite_file_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    s = SqliteStore(path)
    lease = await s.grant_lease(60)
    await s.put("/a", b"1")
    rev = await s.put("/b", b"2", lease=lease.id)
    await s.compact(rev)
    await s.close()
    s = SqliteStore(path)
    try:
        assert await s.revision() == rev
        kv = await s.get("/b")
        assert kv is not None
        assert (kv.value, kv.mod_revision, kv.lease) == (b"2", rev, lease.id)
        await s.keepalive(lease.id)  # leases survive a restart
        assert await s.put("/c", b"3") == rev + 1
        with pytest.raises(Compacted):
            await anext(s.watch("/", rev - 1))
        short = await s.grant_lease(0.3)
        await s.put("/short", b"", lease=short.id)
        deadline = time.time() + short.ttl
    finally:
        await s.close()

    async def past_deadline() -> bool:
        return time.time() > deadline + 0.05

    await eventually(past_deadline)
    s = SqliteStore(path)
    try:
        # Like etcd after a leader change, a reopened store gives each lease a full TTL to be renewed in.
        assert await s.get("/short") is not None

        async def expired_after_reopen() -> bool:
            return await s.get("/short") is None

        await eventually(expired_after_reopen)
        with pytest.raises(LeaseNotFound):
            await s.keepalive(short.id)
    finally:
        await s.close()


_WRITER = """
import asyncio, sys
from gateway.store import Put
from gateway.store._sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    i = 0
    while True:
        if i % 5 == 0:
            rev = (await store.txn([], [Put(f"/txn/{i:06d}/{j}", b"%d" % i) for j in range(4)])).revision
        elif i % 5 == 1:
            # Not fsynced: only a power cut could lose it, never the process being killed.
            rev = (await store.txn([], [Put(f"/put/{i:06d}", b"%d" % i)], durable=False)).revision
        else:
            rev = await store.put(f"/put/{i:06d}", b"%d" % i)
        print(i, rev, flush=True)
        i += 1

asyncio.run(main())
"""


async def test_sqlite_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, path, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    acked: list[tuple[int, int]] = []
    try:
        async with asyncio.timeout(30):
            while len(acked) < 300:
                line = await proc.stdout.readline()
                assert line, "writer exited early"
                index, revision = line.split()
                acked.append((int(index), int(revision)))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    s = SqliteStore(path)
    try:
        assert await s.revision() >= acked[-1][1]
        for i, rev in acked:
            if i % 5 == 0:
                kvs, _ = await s.range(f"/txn/{i:06d}/")
                assert [(kv.value, kv.mod_revision) for kv in kvs] == [(b"%d" % i, rev)] * 4
            else:
                kv = await s.get(f"/put/{i:06d}")
                assert kv is not None
                assert (kv.value, kv.mod_revision) == (b"%d" % i, rev)
        # A write in flight at the kill is all there or not there at all.
        kvs, _ = await s.range("/txn/")
        counts: dict[str, int] = {}
        for kv in kvs:
            counts[kv.key.rsplit("/", 1)[0]] = counts.get(kv.key.rsplit("/", 1)[0], 0) + 1
        assert set(counts.values()) == {4}
    finally:
        await s.close()


async def test_sqlite_quota(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "store.db"), quota_bytes=256 * 1024)
    try:
        written = 0
        with contextlib.suppress(QuotaExceeded):
            while written < 1000:
                await s.put(f"/big/{written}", b"x" * 1024)
                written += 1
        assert 10 < written < 1000
        r = await s.delete("/big/0")
        assert r > 0, "deletes still work over quota"
        with pytest.raises(QuotaExceeded):
            await s.txn([], [Put("/more", b"")])
    finally:
        await s.close()
