"""The local task cache: one SQLite file under the flyte home, shared by every process of the user.

WAL mode lets several processes read while one writes; a write is one small transaction. Only successful
results are cached. The remote cache lives in the gateway; both answer to the same cache key.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ._codec import EncodedValue, ValueKind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    payload BLOB,
    ref TEXT,
    created REAL NOT NULL
)
"""


def cache_key(
    task_name: str,
    interface_digest: str,
    version: str,
    inputs: Mapping[str, EncodedValue],
    ignored: tuple[str, ...],
    salt: str,
) -> str:
    """The same task, interface, cache version and inputs (less the ignored ones) give the same key."""
    h = hashlib.sha256(f"{task_name}\x1f{interface_digest}\x1f{version}\x1f{salt}".encode())
    for name in sorted(inputs):
        if name not in ignored:
            h.update(f"\x1f{name}={inputs[name].digest}".encode())
    return h.hexdigest()


class LocalCache:
    """Cached task outputs by cache key."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> EncodedValue | None:
        with self._lock:
            row = self._db.execute("SELECT kind, digest, payload, ref FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        kind: ValueKind = row[0]
        return EncodedValue(kind, row[1], payload=row[2], ref=row[3])

    def put(self, key: str, task_name: str, value: EncodedValue) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache (key, task, kind, digest, payload, ref, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, task_name, value.kind, value.digest, value.payload, value.ref, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
