"""Durable state behind one protocol: the embedded SQLite store (default) and etcd; `open_store(url)` picks one."""

from ._factory import open_store
from ._protocol import (
    MAX_TXN_OPS,
    Compacted,
    Compare,
    Delete,
    EventType,
    InvalidTxn,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    Put,
    QuotaExceeded,
    Store,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchEvent,
)

__all__ = [
    "MAX_TXN_OPS",
    "Compacted",
    "Compare",
    "Delete",
    "EventType",
    "InvalidTxn",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "Op",
    "Put",
    "QuotaExceeded",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
    "WatchEvent",
    "open_store",
]
