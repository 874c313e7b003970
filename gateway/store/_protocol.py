"""The `Store` protocol: the gateway's only view of durable state, with etcd v3's semantics.

Every key has a `mod_revision` from one store-wide revision counter that grows by one per committed write
(a transaction with many operations commits at one revision). A compare-and-swap is a transaction that compares
keys' mod revisions (0 = "must not exist") and applies its success or failure operations atomically. Leases
expire unless kept alive, and deleting a lease deletes the keys attached to it. A watch streams every change
under a prefix from a revision on, in revision order; asking for a revision the store has compacted away raises
`Compacted`, and the watcher re-lists.

Every write is durable when it is acknowledged (it survives a power cut), except a transaction a caller marks
`durable=False`: it survives the gateway's process dying, but an OS crash or power cut may lose it, together with
every later write not yet made durable. Loss is always a suffix of the history, never a hole: the next durable
write (or `sync`) makes every earlier one durable. Only writes that can be rebuilt after a crash may skip durability.

Two implementations stand behind it: the embedded SQLite store (default; `:memory:` for tests) and etcd.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_TXN_OPS = 128
"""etcd's default limit on operations in one transaction; both stores enforce it so behaviour matches."""


class StoreError(Exception):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the gateway answers 503 and reports not ready."""


class Compacted(StoreError):
    """A watch asked for history older than the store keeps."""

    def __init__(self, compact_revision: int):
        super().__init__(f"revision compacted; history starts after {compact_revision}")
        self.compact_revision = compact_revision


class LeaseNotFound(StoreError):
    """The lease expired or was revoked."""


class QuotaExceeded(StoreError):
    """The store is over its space quota; writes fail until it is compacted."""


class InvalidTxn(StoreError, ValueError):
    """A transaction the store refuses before writing anything: too many operations, or one key written twice."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    """How many times the key was written since it was created."""
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes
    """The new value; empty for a delete."""
    mod_revision: int
    """The revision of this change."""


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when `key`'s mod revision equals `mod_revision` (0: the key does not exist)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    """The store's revision after the transaction (unchanged when no operation ran)."""
    current: dict[str, KeyValue | None]
    """The compared keys as they were when the compares were evaluated, so a loser can retry at once."""


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: float


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str, *, limit: int = 0) -> tuple[list[KeyValue], int]:
        """Keys under a prefix in key order (at most `limit`, 0 = all), and the revision they were read at."""
        ...

    def snapshot(self, prefix: str = "", *, page: int = 1000) -> AsyncIterator[tuple[int, list[KeyValue]]]:
        """Every key under `prefix` as of one revision, in key order, in pages of at most `page` keys, each with
        that revision (the same for every page): writes made while the pages are read are not in them.

        For backups, which must not hold every key in memory at once; on etcd the revision must stay uncompacted
        until the last page (`Compacted` otherwise: start again).
        """
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write one key; returns the revision of the write."""
        ...

    async def delete(self, key: str) -> int:
        """Delete one key; returns the revision of the delete, or 0 when there was no such key."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *, durable: bool = True
    ) -> TxnResult:
        """`durable=False`: the write may be lost to a power cut until a later durable write or `sync` (see above)."""
        ...

    async def sync(self) -> None:
        """Make every write acknowledged so far durable: before what a non-durable write says leaves the gateway."""
        ...

    async def grant_lease(self, ttl: float) -> Lease: ...

    async def keepalive(self, lease_id: int) -> None:
        """Renew a lease for its full TTL; `LeaseNotFound` once it has expired."""
        ...

    async def revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys (each delete is a watch event); `LeaseNotFound` if it already ended."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Batches of changes under `prefix` with revision >= `start_revision`, in order, until cancelled.

        `start_revision` <= 0 means from the next write on. The iteration ends when the store is closed.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before `revision`; watches from older revisions raise `Compacted(revision - 1)`.

        Compacting at or before an earlier compaction does nothing; past the current revision is a `StoreError`.
        """
        ...

    async def revision(self) -> int:
        """The current revision; raises `StoreUnavailable` when the store cannot be reached (readiness)."""
        ...

    async def close(self) -> None: ...
