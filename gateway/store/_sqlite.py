"""The embedded store: etcd's data model on one SQLite file (the gateway's default; `:memory:` for tests).

Tables mirror what etcd keeps: `kv` (the live keys with create/mod revisions, version and lease), `events` (the
change log watches replay, trimmed by `compact`), `leases` (wall-clock deadlines; reopening the store renews each
for a full TTL, as etcd does on a leader change) and `meta` (the current and the compacted revision). Every write
is one SQL transaction at one new revision.

Durability is chosen per commit. In WAL mode every commit survives the process being killed (the WAL is written
before COMMIT returns); `PRAGMA synchronous` only decides whether the commit also fsyncs the WAL, and SQLite reads it
at each commit. A durable transaction (the default) commits with synchronous=FULL: it survives a power cut. One
marked `durable=False` commits with synchronous=NORMAL: no fsync, so an OS crash or power cut may lose it. The WAL is
append-only, so what such a crash loses is a suffix of the commits since the last fsync, never a hole; a durable
commit (or `sync`) fsyncs the WAL and with it every commit before it. Checked with strace: a NORMAL commit makes no
fdatasync, a FULL one makes one.

One connection, used from the event loop: a read costs ~10 µs and a durable commit ~0.35 ms here. A single-thread
executor was measured and not taken: with 16 writers beside a busy loop it cut puts/s from ~2,300 to ~1,500 (GIL
hand-offs), and reads would pay a thread hop each. Each write yields to the loop once after committing. Watchers
that are caught up get each commit's events handed over in memory; a watcher that is behind (or starts in the past)
reads the event log, so a watch never misses an event and never sees one twice. One process owns the file:
watchers are woken in-process.

A file's checkpoints (copying the WAL into the database file) are made by a thread with a connection of its own
(`_checkpoints.py`), not inside the commit that crosses SQLite's threshold, which held the event loop for a
checkpoint's writes and fsync: the writer only finishes each, between two commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from flyte._clock import SYSTEM_CLOCK, Clock, wait_event

from ._checkpoints import CHECKPOINT, PAGE, Checkpoints
from ._common import check_txn, prefix_end
from ._protocol import (
    MAX_TXN_OPS,
    Compacted,
    Compare,
    Delete,
    EventType,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    Put,
    QuotaExceeded,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchEvent,
)

log = logging.getLogger("flyte.gateway.store")

_SCHEMA = """
-- Rowid tables, not WITHOUT ROWID: values of a few KiB would spill to overflow pages in an index b-tree.
CREATE TABLE IF NOT EXISTS kv (
    key BLOB NOT NULL UNIQUE, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;
-- Events are appended in revision order, so rowid order is revision order, then operation order.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, revision INTEGER NOT NULL, key BLOB NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_revision ON events (revision);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0), revision INTEGER NOT NULL, compacted INTEGER NOT NULL
);
-- etcd's first revision is 1 (an empty store), so the first write is at 2 in both stores.
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 1, 0);
"""

_PUT, _DELETE = 0, 1
_UPSERT = (
    "INSERT INTO kv (key, value, create_revision, mod_revision, version, lease) VALUES (?1, ?2, ?3, ?3, 1, ?4)"
    " ON CONFLICT (key) DO UPDATE SET value = ?2, mod_revision = ?3, version = version + 1, lease = ?4"
)
_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"
_WATCH_WINDOW = 512
"""Revisions read from the event log per catch-up step, so a watch from far back streams instead of loading all."""
_PENDING_LIMIT = 10_000
"""Events held in memory for a watcher whose consumer is slow; past this it falls back to reading the log."""
_SQLITE_FULL = 13
_CACHED_STATEMENTS = 2 * MAX_TXN_OPS + 64
"""Room for the compare reads (one statement per number of keys, `_current`) beside the store's other statements."""


async def _yield_to_loop() -> None:
    """Let other tasks run after a write. SQLite calls never suspend, so without this a caller writing in a loop
    would hold the event loop for its whole batch; a write is ~0.35 ms, so the yield (~5 µs) is cheap."""
    await asyncio.sleep(0)


def _kv(row: Any) -> KeyValue:
    return KeyValue(row[0].decode(), row[1], row[2], row[3], row[4], row[5])


class _Watcher:
    __slots__ = ("next", "pending", "prefix", "wake")

    def __init__(self, prefix: str, start: int):
        self.prefix = prefix
        self.next = start
        """The first revision not yet read into `pending` or yielded."""
        self.pending: list[WatchEvent] = []
        self.wake = asyncio.Event()


class _Errors:
    """SQLite's errors as the store's, around a block. A class rather than a generator-based context manager: every
    read and write enters one, and this costs a fraction of the generator's set-up."""

    __slots__ = ("_store",)

    def __init__(self, store: object):
        self._store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if not isinstance(exc, sqlite3.Error):
            return
        if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == _SQLITE_FULL:
            raise QuotaExceeded(f"{self._store!r}: the disk is full: {exc}") from exc
        raise StoreUnavailable(f"{self._store!r} cannot be used: {exc}") from exc


def _private_files(path: str) -> None:
    """Make the database file 0600 before SQLite opens it: SQLite gives its WAL and shared-memory files the
    database's mode, so every run's inputs and outputs stay readable by this user alone."""
    if path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


WAL_SIZE_LIMIT = 64 * 2**20
"""Bytes of write-ahead log kept after a checkpoint; the rest of the file is given back."""


class SqliteStore:
    """The `Store` protocol on SQLite. `quota_bytes` (0 = none) bounds the live data; past it, puts fail."""

    def __init__(self, path: str, *, quota_bytes: int = 0, read_only: bool = False, clock: Clock = SYSTEM_CLOCK):
        self._path = path
        self._clock = clock
        """Lease deadlines run on it (a test moves a `ManualClock` past one to expire a lease)."""
        self._quota = quota_bytes
        self._closed = False
        self._read_only = read_only
        self._durable = True
        """The connection's synchronous mode (FULL: True); `_begin` switches it only when a commit needs the other."""
        self._unsynced = False
        """Whether a commit since the WAL's last fsync was not durable: what `sync` has to make durable."""
        self._translated = _Errors(self)
        self._checkpoints: Checkpoints | None = None
        """The thread checkpointing a file's log (`_checkpoints.py`); none for `:memory:` or a URI, whose commits
        checkpoint as SQLite does by default."""
        try:
            if read_only:
                # For backups of a file a running gateway owns: no lease renewal, no sweeper, nothing written.
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
                self._rev, self._compacted = self._db.execute("SELECT revision, compacted FROM meta").fetchone()
            else:
                _private_files(path)
                # isolation_level=None: we issue BEGIN/COMMIT ourselves, one SQL transaction per revision.
                self._db = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, cached_statements=_CACHED_STATEMENTS
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                own_checkpoints = path != ":memory:" and not path.startswith("file:")
                if own_checkpoints:
                    self._db.execute("PRAGMA wal_autocheckpoint=0")
                # A burst (a 10,000-way fan-out) grows the WAL; without a limit it keeps its high point for good.
                self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
                self._db.executescript(_SCHEMA)
                self._rev, self._compacted = self._db.execute("SELECT revision, compacted FROM meta").fetchone()
                # As etcd does when a new leader takes over: every lease gets at least a full TTL from now, so
                # holders can reconnect and renew instead of all expiring the moment a gateway that was down comes
                # back.
                with self._write() as db:
                    db.execute("UPDATE leases SET expires_at = MAX(expires_at, ? + ttl)", (self._clock.time(),))
                # After that commit, which may have written nothing and so synced nothing: a process that was killed
                # may have left non-durable commits in the WAL that no fsync has reached yet.
                self._unsynced = True
                if own_checkpoints:
                    # Last: a store that failed to open leaves no thread behind.
                    self._checkpoints = Checkpoints(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {path}: {exc}") from exc
        self._watchers: set[_Watcher] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._leases_changed: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # -- reads -------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._ready()
        with self._errors():
            return self._get(key.encode())

    async def range(self, prefix: str, *, limit: int = 0) -> tuple[list[KeyValue], int]:
        self._ready()
        start = prefix.encode()
        end = prefix_end(start)
        sql = f"SELECT {_KV_COLUMNS} FROM kv WHERE key >= ?"
        args: list[Any] = [start]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key"
        if limit > 0:
            sql += " LIMIT ?"
            args.append(limit)
        with self._errors():
            rows = self._db.execute(sql, args).fetchall()
        return [_kv(r) for r in rows], self._rev

    async def snapshot(self, prefix: str = "", *, page: int = 1000) -> AsyncIterator[tuple[int, list[KeyValue]]]:
        self._ready()
        if page <= 0:
            raise ValueError(f"a snapshot page holds at least one key, not {page}")
        if self._path == ":memory:":
            # Nothing else can open an in-memory database: one read is the snapshot (test stores are small).
            kvs, at = await self.range(prefix)
            for first in range(0, len(kvs), page):
                yield at, kvs[first : first + page]
            return
        # A second connection in one read transaction sees the file as of its first read (WAL snapshot isolation),
        # while this store's own connection goes on writing.
        rev: int
        with self._errors():
            reader = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, isolation_level=None)
        try:
            with self._errors():
                reader.execute("BEGIN")
                rev = reader.execute("SELECT revision FROM meta").fetchone()[0]
            start = prefix.encode()
            end = prefix_end(start)
            after: bytes | None = None
            while True:
                sql = f"SELECT {_KV_COLUMNS} FROM kv WHERE key >= ?"
                args: list[Any] = [start]
                if after is not None:
                    sql += " AND key > ?"
                    args.append(after)
                if end is not None:
                    sql += " AND key < ?"
                    args.append(end)
                with self._errors():
                    rows = reader.execute(sql + " ORDER BY key LIMIT ?", [*args, page]).fetchall()
                if not rows:
                    return
                after = rows[-1][0]
                yield rev, [_kv(r) for r in rows]
        finally:
            reader.close()

    async def revision(self) -> int:
        self._ready()
        with self._errors():
            # Read the file rather than the cached counter: readiness must notice a database that stopped working.
            rev: int = self._db.execute("SELECT revision FROM meta").fetchone()[0]
        return rev

    def _get(self, key: bytes) -> KeyValue | None:
        row = self._db.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else _kv(row)

    # -- writes ------------------------------------------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._ready()
        result = self._commit((), (Put(key, value, lease),), ())[0]
        await _yield_to_loop()
        return result.revision

    async def delete(self, key: str) -> int:
        self._ready()
        result, changed = self._commit((), (Delete(key),), ())
        await _yield_to_loop()
        return result.revision if changed else 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *, durable: bool = True
    ) -> TxnResult:
        self._ready()
        check_txn(compares, success, failure)
        result = self._commit(compares, success, failure, durable)[0]
        await _yield_to_loop()
        return result

    async def sync(self) -> None:
        self._ready()
        if not self._unsynced:
            return
        # A FULL commit fsyncs the WAL, and with it the non-durable commits before it. An empty transaction writes
        # no frame and syncs nothing, so this one changes the header's user_version (nothing else reads it).
        with self._errors(), self._write() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {(version + 1) % 2**31}")

    def _begin(self, durable: bool = True) -> None:
        """Open a write transaction whose commit is durable (synchronous=FULL) or not (NORMAL: no fsync)."""
        if durable != self._durable:
            # Set between transactions; SQLite reads the mode when the transaction commits.
            self._db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._durable = durable
        self._db.execute("BEGIN IMMEDIATE")

    def _end(self, durable: bool, events: Sequence[WatchEvent] = ()) -> None:
        """Commit the open transaction, which has written something (an empty commit writes no frame, syncs nothing).

        A durable commit fsyncs the WAL, and with it every commit before it: `sync` has nothing left to do.
        """
        self._db.execute("COMMIT")
        self._unsynced = not durable
        # What the commit appended to the log, about: its values, each twice (`kv` and `events`), and the pages of
        # the tables and indexes it touched.
        if self._checkpoints is not None and self._checkpoints.due(2 * sum(len(e.value) for e in events) + 3 * PAGE):
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Between two commits: copy what the checkpoint thread left (`_checkpoints.py`), so the next commit starts
        the log again. A failure is not the commit's (it is made): the next one tries again."""
        assert self._checkpoints is not None
        try:
            busy, in_log, copied = self._db.execute(CHECKPOINT).fetchone()
        except sqlite3.Error as error:
            log.warning("a checkpoint of %s failed: %s", self._path, error)
            return
        self._checkpoints.made(complete=not busy and in_log == copied)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A durable write transaction around the block: committed when it ends, rolled back if it raises."""
        db = self._db
        self._begin()
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._end(durable=True)

    def _commit(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op], durable: bool = True
    ) -> tuple[TxnResult, bool]:
        """Evaluate and apply one transaction as one SQL transaction at (at most) one new revision.

        Also says whether anything changed, so `delete` can tell a delete from a miss without a second query.
        """
        db = self._db
        # This connection is the file's only writer, so the revision it last committed is the file's.
        rev = self._rev
        with self._errors():
            self._begin(durable)
            try:
                current = self._current(compares)
                succeeded = all(
                    (kv.mod_revision if (kv := current[c.key]) is not None else 0) == c.mod_revision for c in compares
                )
                events = self._apply(success if succeeded else failure, rev + 1)
                if not events:
                    db.execute("ROLLBACK")
                    return TxnResult(succeeded, rev, current), False
                db.execute("UPDATE meta SET revision = ?", (rev + 1,))
                self._end(durable, events)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        self._rev = rev + 1
        self._publish(rev + 1, events)
        return TxnResult(succeeded, rev + 1, current), True

    def _current(self, compares: Sequence[Compare]) -> dict[str, KeyValue | None]:
        """The compared keys as they are now (None: no such key), in one query however many there are."""
        if not compares:
            return {}
        if len(compares) == 1:
            key = compares[0].key
            return {key: self._get(key.encode())}
        keys = [c.key.encode() for c in compares]
        # One statement per number of keys (at most MAX_TXN_OPS), each prepared once and kept in the statement cache.
        sql = f"SELECT {_KV_COLUMNS} FROM kv WHERE key IN ({','.join('?' * len(keys))})"
        found = {row[0]: row for row in self._db.execute(sql, keys)}
        return {c.key: None if (row := found.get(k)) is None else _kv(row) for c, k in zip(compares, keys, strict=True)}

    def _apply(self, ops: Sequence[Op], rev: int) -> list[WatchEvent]:
        """Apply `ops` inside the open SQL transaction; the events they caused (none: nothing changed)."""
        db = self._db
        if any(isinstance(op, Put) for op in ops):
            self._check_quota()
        now = self._clock.time()
        events: list[WatchEvent] = []
        rows: list[tuple[int, bytes, int, bytes]] = []
        puts: list[tuple[bytes, bytes, int, int]] = []
        for op in ops:
            key = op.key.encode()
            if isinstance(op, Put):
                if op.lease != 0 and not self._lease_alive(op.lease, now):
                    raise LeaseNotFound(f"lease {op.lease} not found (expired or revoked)")
                puts.append((key, op.value, rev, op.lease))
                events.append(WatchEvent(EventType.PUT, op.key, op.value, rev))
                rows.append((rev, key, _PUT, op.value))
            elif db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount:
                events.append(WatchEvent(EventType.DELETE, op.key, b"", rev))
                rows.append((rev, key, _DELETE, b""))
        # A branch writes each key once (`check_txn`), so the puts may follow the deletes: one statement for them all.
        if puts:
            db.executemany(_UPSERT, puts)
        if rows:
            db.executemany("INSERT INTO events (revision, key, type, value) VALUES (?, ?, ?, ?)", rows)
        return events

    def _check_quota(self) -> None:
        if self._quota <= 0:
            return
        pages, free, size = (
            self._db.execute("PRAGMA page_count").fetchone()[0],
            self._db.execute("PRAGMA freelist_count").fetchone()[0],
            self._db.execute("PRAGMA page_size").fetchone()[0],
        )
        used = (pages - free) * size
        if used > self._quota:
            raise QuotaExceeded(f"the store uses {used} bytes, over its quota of {self._quota}; compact it")

    # -- leases ------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> Lease:
        self._ready()
        if ttl <= 0:
            raise ValueError(f"a lease needs a positive TTL, not {ttl}")
        with self._errors():
            while True:
                # Random ids, like etcd's: an id from before a restart is never handed out again by accident.
                lease_id = secrets.randbits(62) + 1
                try:
                    with self._write() as db:
                        db.execute(
                            "INSERT INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)",
                            (lease_id, ttl, self._clock.time() + ttl),
                        )
                    break
                except sqlite3.IntegrityError:
                    continue
        if self._leases_changed is not None:
            self._leases_changed.set()
        return Lease(lease_id, ttl)

    async def keepalive(self, lease_id: int) -> None:
        self._ready()
        now = self._clock.time()
        with self._errors():
            row = self._db.execute("SELECT ttl, expires_at FROM leases WHERE id = ?", (lease_id,)).fetchone()
            if row is not None and row[1] > now:
                with self._write() as db:
                    db.execute("UPDATE leases SET expires_at = ? WHERE id = ?", (now + row[0], lease_id))
                return
        if row is not None:
            # Expired but not swept yet: end it now so its keys are gone by the time the caller reacts.
            self._end_lease(lease_id)
        raise LeaseNotFound(f"lease {lease_id} not found (expired or revoked)")

    async def revoke(self, lease_id: int) -> None:
        self._ready()
        if not self._end_lease(lease_id):
            raise LeaseNotFound(f"lease {lease_id} not found (expired or revoked)")

    def _lease_alive(self, lease_id: int, now: float) -> bool:
        row = self._db.execute("SELECT expires_at FROM leases WHERE id = ?", (lease_id,)).fetchone()
        return row is not None and row[0] > now

    def _end_lease(self, lease_id: int) -> bool:
        """Delete a lease and its keys (one revision, one delete event per key); False if there was no lease."""
        db = self._db
        with self._errors():
            self._begin()
            try:
                if not db.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount:
                    db.execute("ROLLBACK")
                    return False
                keys = [r[0] for r in db.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,))]
                rev = self._rev
                events = self._apply([Delete(k.decode()) for k in keys], rev + 1)
                if events:
                    db.execute("UPDATE meta SET revision = ?", (rev + 1,))
                self._end(durable=True)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        if events:
            self._rev = rev + 1
            self._publish(rev + 1, events)
        return True

    async def _sweep_leases(self) -> None:
        assert self._leases_changed is not None
        changed = self._leases_changed
        while not self._closed:
            changed.clear()
            delay: float | None = None
            try:
                now = self._clock.time()
                expired = [r[0] for r in self._db.execute("SELECT id FROM leases WHERE expires_at <= ?", (now,))]
                for lease_id in expired:
                    self._end_lease(lease_id)
                min_ttl, earliest = self._db.execute("SELECT MIN(ttl), MIN(expires_at) FROM leases").fetchone()
                if min_ttl is not None:
                    # Check often enough for the shortest lease (ttl/4) and not later than the next deadline.
                    delay = min(max(min_ttl / 4, 0.05), 1.0, max(earliest - self._clock.time(), 0.0))
                    delay = max(delay, 0.01)
            except (StoreError, sqlite3.Error):
                log.exception("lease sweep failed; retrying")
                delay = 1.0
            await wait_event(self._clock, changed, delay)

    # -- watches -----------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        self._ready()
        w = _Watcher(prefix, start_revision if start_revision > 0 else self._rev + 1)
        self._watchers.add(w)
        try:
            while not self._closed:
                if w.pending:
                    batch, w.pending = w.pending, []
                    yield batch
                elif w.next <= self._rev:
                    if w.next <= self._compacted:
                        raise Compacted(self._compacted)
                    last = min(self._rev, w.next + _WATCH_WINDOW - 1)
                    batch = self._read_events(prefix, w.next, last)
                    w.next = last + 1
                    if batch:
                        yield batch
                else:
                    w.wake.clear()
                    await w.wake.wait()
        finally:
            self._watchers.discard(w)

    def _read_events(self, prefix: str, first: int, last: int) -> list[WatchEvent]:
        start = prefix.encode()
        end = prefix_end(start)
        sql = "SELECT revision, key, type, value FROM events WHERE revision >= ? AND revision <= ? AND key >= ?"
        args: list[Any] = [first, last, start]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        with self._errors():
            rows = self._db.execute(sql + " ORDER BY revision, id", args).fetchall()
        return [
            WatchEvent(EventType.PUT if t == _PUT else EventType.DELETE, k.decode(), v, rev) for rev, k, t, v in rows
        ]

    def _publish(self, rev: int, events: list[WatchEvent]) -> None:
        for w in self._watchers:
            if w.next == rev:
                # Caught up: hand the events over instead of making every watcher query the log.
                prefix = w.prefix
                mine = [e for e in events if e.key.startswith(prefix)]
                w.next = rev + 1
                if not mine:
                    # Nothing under its prefix: a watcher waiting for the next write has nothing to wake up for (the
                    # gateway's watchers of sessions, the leader key, notifications would each take a turn of the
                    # loop for every write of an action).
                    continue
                w.pending.extend(mine)
                if len(w.pending) > _PENDING_LIMIT:
                    w.next = w.pending[0].mod_revision
                    w.pending.clear()
            w.wake.set()

    async def compact(self, revision: int) -> None:
        self._ready()
        if revision > self._rev:
            raise StoreError(f"cannot compact at {revision}: the store is at revision {self._rev}")
        if revision - 1 <= self._compacted:
            return
        with self._errors(), self._write() as db:
            db.execute("DELETE FROM events WHERE revision < ?", (revision,))
            db.execute("UPDATE meta SET compacted = ?", (revision - 1,))
        self._compacted = revision - 1
        for w in self._watchers:
            w.wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _ready(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        if self._sweeper is None and not self._read_only:
            self._leases_changed = asyncio.Event()
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_leases(), name="sqlite-lease-sweep")

    def _errors(self) -> _Errors:
        return self._translated

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._watchers:
            w.wake.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._checkpoints is not None:
            self._checkpoints.close()
        self._db.close()
