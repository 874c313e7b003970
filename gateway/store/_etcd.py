"""The etcd store: the `Store` protocol on a real etcd v3 cluster (production, HA), through etcd3aio.

Mostly a direct mapping: keys are UTF-8 strings here and bytes on the wire; "must not exist" compares
create_revision with 0; a transaction reads the compared keys inside itself, so `TxnResult.current` is the state
the compares saw. Two things etcd3aio does not do the way the protocol needs, done here on its gRPC channel:
lease keepalive is one request on the keepalive stream (so an expired lease raises at once), and watches track the
last delivered revision themselves, so a reconnect resumes exactly after it (etcd3aio's own watch resumes after
the response header's revision, which can skip history a watcher had not yet received).

Errors: an unreachable cluster is `StoreUnavailable` naming host:port; etcd's own refusals map to `LeaseNotFound`,
`QuotaExceeded`, `InvalidTxn` or `StoreError`. `Compacted.compact_revision` is the newest revision whose history is
gone (etcd reports the first revision it still has, one more).

Every acknowledged write is durable (raft persists it on a quorum), so `txn(durable=False)` and `sync` cost nothing
less and nothing more here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NoReturn

import grpc
import grpc.aio
from etcd3aio import EtcdError
from etcd3aio._protobuf import Compare as PbCompare
from etcd3aio._protobuf import RequestOp, WatchCreateRequest, WatchRequest, WatchStub
from etcd3aio.connections import ConnectionManager
from etcd3aio.kv import KVService
from etcd3aio.lease import LeaseService

from flyte._retrying import RetryDelay

from ._common import check_txn, prefix_end
from ._protocol import (
    MAX_TXN_OPS,
    Compacted,
    Compare,
    EventType,
    InvalidTxn,
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

_RECONNECT_FIRST, _RECONNECT_MAX = 0.05, 1.0
_MAX_MESSAGE = 2**31 - 1
"""The largest gRPC message taken from etcd: as etcd's clientv3 (`MaxCallRecvMsgSize`), no limit of our own."""


def _kv(pb: Any) -> KeyValue:
    return KeyValue(pb.key.decode(), pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


def _range_bounds(prefix: str) -> tuple[bytes, bytes]:
    key = prefix.encode()
    end = prefix_end(key)
    # etcd spells "every key from `key` on" as range_end "\0"; the empty prefix starts at the smallest key.
    return (key or b"\0"), (b"\0" if end is None else end)


def grpc_target(members: Sequence[tuple[str, int]]) -> str:
    """The gRPC target for etcd's members: IP literals as a static list that gRPC balances over (a member that
    stops answering is skipped); one host name through DNS, which may name every member itself."""
    literal = all(_is_ip(host) or host == "localhost" for host, _ in members)
    if literal:
        spelled = [f"[{h}]:{p}" if ":" in h else f"{h.replace('localhost', '127.0.0.1')}:{p}" for h, p in members]
        scheme = "ipv6" if any(":" in h for h, _ in members) else "ipv4"
        return f"{scheme}:{','.join(spelled)}"
    if len(members) == 1:
        host, port = members[0]
        return f"dns:///{host}:{port}"
    raise ValueError(
        "several etcd members must be given as IP addresses (or as one DNS name that resolves to all of them), not "
        + ", ".join(f"{h}:{p}" for h, p in members)
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class EtcdStore:
    """The `Store` protocol on etcd at `host:port`. Construct it inside a running event loop (gRPC needs one).

    `timeout` bounds each call, retries included; past it the call raises `StoreUnavailable`.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 5.0, more: Sequence[tuple[str, int]] = ()):
        members = [(host, port), *more]
        self._target = ",".join(f"{h}:{p}" for h, p in members)
        self._timeout = timeout
        manager = ConnectionManager([f"{h}:{p}" for h, p in members])
        manager.target = grpc_target(members)
        # gRPC backs off reconnecting for up to 2 minutes by default, failing every call meanwhile; a gateway should
        # be ready again within a second of etcd coming back.
        # etcd refuses keepalive pings on a connection without a stream (GOAWAY too_many_pings, then a reconnect):
        # an idle client pings nobody, and one with a watch or a lease stream open pings as before.
        manager.grpc_options = [o for o in manager.grpc_options if o[0] != "grpc.keepalive_permit_without_calls"]
        manager.grpc_options += [
            ("grpc.keepalive_permit_without_calls", 0),
            # gRPC's 4 MiB default is below what etcd sends a watch catching up over many revisions, or a range of
            # thousands of actions; etcd's own Go client lifts the limit the same way.
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self._channel = manager.get_channel()
        self._kv = KVService(self._channel)
        self._lease = LeaseService(self._channel)
        self._watch_stub = WatchStub(self._channel)
        self._closed = False

    def __repr__(self) -> str:
        return f"EtcdStore({self._target!r})"

    # -- reads -------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        with self._errors():
            resp = await self._kv.get(key.encode(), timeout=self._timeout)
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def range(self, prefix: str, *, limit: int = 0) -> tuple[list[KeyValue], int]:
        key, end = _range_bounds(prefix)
        with self._errors():
            # etcd returns a range in key order already; asking it to sort would only cost.
            resp = await self._kv.get(key, end, limit=max(limit, 0), timeout=self._timeout)
        return [_kv(kv) for kv in resp.kvs], resp.header.revision

    async def snapshot(self, prefix: str = "", *, page: int = 1000) -> AsyncIterator[tuple[int, list[KeyValue]]]:
        if page <= 0:
            raise ValueError(f"a snapshot page holds at least one key, not {page}")
        key, end = _range_bounds(prefix)
        rev = await self.revision()
        while True:
            with self._errors():
                try:
                    resp = await self._kv.get(key, end, revision=rev, limit=page, timeout=self._timeout)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                        raise Compacted(rev) from exc
                    raise
            if not resp.kvs:
                return
            yield rev, [_kv(kv) for kv in resp.kvs]
            if not resp.more:
                return
            # The next page starts just after the last key read (a key followed by a zero byte).
            key = resp.kvs[-1].key + b"\0"

    async def revision(self) -> int:
        with self._errors():
            # A linearizable read of an absent key: cheap, and it proves the cluster has a quorum.
            resp = await self._kv.get(b"\0", count_only=True, timeout=self._timeout)
        rev: int = resp.header.revision
        return rev

    # -- writes ------------------------------------------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        with self._errors():
            resp = await self._kv.put(key.encode(), value, lease=lease, timeout=self._timeout)
        rev: int = resp.header.revision
        return rev

    async def delete(self, key: str) -> int:
        with self._errors():
            resp = await self._kv.delete(key.encode(), timeout=self._timeout)
        rev: int = resp.header.revision
        return rev if resp.deleted else 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *, durable: bool = True
    ) -> TxnResult:
        # `durable` changes nothing here: raft persists every write on a quorum before etcd answers.
        check_txn(compares, success, failure)
        keys = list(dict.fromkeys(c.key for c in compares))
        reads = [KVService.txn_op_get(k.encode()) for k in keys]
        wire_success, wire_failure = [self._op(op) for op in success], [self._op(op) for op in failure]
        # Reading the compared keys inside the transaction makes `current` exactly what the compares saw; when that
        # would push a branch past etcd's op limit, they are read afterwards at the revision the compares saw.
        inline_success = len(reads) + len(wire_success) <= MAX_TXN_OPS
        inline_failure = len(reads) + len(wire_failure) <= MAX_TXN_OPS
        with self._errors():
            resp = await self._kv.txn(
                [self._compare(c) for c in compares],
                (reads if inline_success else []) + wire_success,
                (reads if inline_failure else []) + wire_failure,
                timeout=self._timeout,
            )
        revision: int = resp.header.revision
        if inline_success if resp.succeeded else inline_failure:
            found = [r.response_range.kvs for r in resp.responses[: len(keys)]]
        else:
            wrote = any(
                r.HasField("response_put") or (r.HasField("response_delete_range") and r.response_delete_range.deleted)
                for r in resp.responses
            )
            found = await self._read_at(keys, revision - 1 if wrote else revision)
        current = {k: (_kv(kvs[0]) if kvs else None) for k, kvs in zip(keys, found, strict=True)}
        return TxnResult(bool(resp.succeeded), revision, current)

    async def sync(self) -> None:
        """Nothing to do: every write etcd acknowledged is durable already."""

    async def _read_at(self, keys: list[str], revision: int) -> list[Any]:
        with self._errors():
            try:
                resp = await self._kv.txn(
                    [], [KVService.txn_op_get(k.encode(), revision=revision) for k in keys], timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.OUT_OF_RANGE:
                    raise
                # Compacted in the instant since the write: the latest values are the best left to report.
                resp = await self._kv.txn([], [KVService.txn_op_get(k.encode()) for k in keys], timeout=self._timeout)
        return [r.response_range.kvs for r in resp.responses]

    @staticmethod
    def _compare(c: Compare) -> PbCompare:
        if c.mod_revision == 0:
            return KVService.txn_compare_create_revision(c.key.encode(), 0)
        return PbCompare(result=PbCompare.EQUAL, target=PbCompare.MOD, key=c.key.encode(), mod_revision=c.mod_revision)

    @staticmethod
    def _op(op: Op) -> RequestOp:
        if isinstance(op, Put):
            return KVService.txn_op_put(op.key.encode(), op.value, lease=op.lease)
        return KVService.txn_op_delete(op.key.encode())

    # -- leases ------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> Lease:
        if ttl <= 0:
            raise ValueError(f"a lease needs a positive TTL, not {ttl}")
        with self._errors():
            # etcd counts whole seconds and may raise a short TTL to its minimum; report what it granted.
            resp = await self._lease.grant(max(1, int(-(-ttl // 1))), timeout=self._timeout)
        return Lease(resp.ID, float(resp.TTL))

    async def keepalive(self, lease_id: int) -> None:
        with self._errors():
            call = self._lease.keep_alive(lease_id)
            try:
                async with asyncio.timeout(self._timeout):
                    async for resp in call:
                        if resp.TTL <= 0:
                            raise LeaseNotFound(f"lease {lease_id} not found (expired or revoked)")
                        return
            finally:
                call.cancel()
        raise StoreUnavailable(f"etcd at {self._target} ended a lease keepalive without answering")

    async def revoke(self, lease_id: int) -> None:
        with self._errors():
            await self._lease.revoke(lease_id, timeout=self._timeout)

    # -- watches -----------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        key, end = _range_bounds(prefix)
        # "From now" is pinned to a number first, so a reconnect before the first event cannot skip any.
        next_rev = start_revision if start_revision > 0 else await self.revision() + 1
        failing_since: float | None = None
        retry = RetryDelay(_RECONNECT_FIRST, _RECONNECT_MAX)
        while not self._closed:
            create = WatchCreateRequest(key=key, range_end=end, start_revision=next_rev)
            call = self._watch_stub.Watch(_requests(WatchRequest(create_request=create)))
            try:
                async for resp in call:
                    failing_since = None
                    retry.reset()
                    if resp.compact_revision:
                        raise Compacted(resp.compact_revision - 1)
                    if resp.canceled:
                        raise StoreError(f"etcd at {self._target} cancelled a watch: {resp.cancel_reason}")
                    if resp.events:
                        batch = [
                            WatchEvent(
                                EventType.DELETE if e.type == 1 else EventType.PUT,
                                e.kv.key.decode(),
                                e.kv.value,
                                e.kv.mod_revision,
                            )
                            for e in resp.events
                        ]
                        next_rev = batch[-1].mod_revision + 1
                        yield batch
            except asyncio.CancelledError:
                # Closing the channel cancels its calls from gRPC's side; only a cancel of our own task propagates.
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    return
                raise
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    return
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self._raise(exc)
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self._timeout:
                    raise StoreUnavailable(f"etcd at {self._target} is unreachable: {exc.details()}") from exc
            finally:
                call.cancel()
            # The server ended the stream or the connection dropped: resume after the last delivered revision.
            await retry.sleep()

    async def compact(self, revision: int) -> None:
        with self._errors():
            try:
                await self._kv.compact(revision, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                # Compacting at or before the last compaction is a no-op, as in the SQLite store.
                if exc.code() != grpc.StatusCode.OUT_OF_RANGE or "compacted" not in (exc.details() or ""):
                    raise

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        try:
            yield
        except grpc.aio.AioRpcError as exc:
            self._raise(exc)
        except (EtcdError, TimeoutError) as exc:
            raise StoreUnavailable(f"etcd at {self._target} is unreachable: {exc or 'timed out'}") from exc

    def _raise(self, exc: grpc.aio.AioRpcError) -> NoReturn:
        code, detail = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.NOT_FOUND and "lease" in detail:
            raise LeaseNotFound(detail) from exc
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "space" in detail:
            raise QuotaExceeded(f"etcd at {self._target}: {detail}") from exc
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidTxn(f"etcd at {self._target} refused the request: {detail}") from exc
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise StoreUnavailable(f"etcd at {self._target} is unreachable: {detail}") from exc
        raise StoreError(f"etcd at {self._target}: {code.name}: {detail}") from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._channel.close()


async def _requests(first: WatchRequest) -> AsyncIterator[WatchRequest]:
    yield first
    # Keep the request side open: closing it would end the watch.
    await asyncio.Event().wait()
