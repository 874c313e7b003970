"""The SQLite store's checkpoints, made by a thread of their own instead of inside a commit.

SQLite copies the write-ahead log into the database file (a checkpoint) inside the commit that takes the log past
1,000 pages, and fsyncs the database file there: ~5-15 ms while the gateway's event loop waits. In a 10,000-way
fan-out those commits held the loop for ~0.7 s of a 13 s run (bench/, docs/performance.md). Here the writer's
connection never checkpoints (`wal_autocheckpoint=0`). It tells `Checkpoints.wrote` roughly how many bytes each
commit appended, and every `every` bytes a thread checkpoints on a connection of its own: PASSIVE, so the writer
never waits for it, and Python's sqlite3 module lets go of the GIL while SQLite works. The first commit after a
complete checkpoint starts the log again from its beginning, as after an automatic one, so the log stays as short as
it was; the database file and durability are SQLite's own (a checkpoint fsyncs the log before copying it).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("flyte.gateway.store")

CHECKPOINT_BYTES = 4 * 2**20
"""Bytes appended to the log between checkpoints: SQLite's own default (1,000 pages of 4 KiB)."""
PAGE = 4096
"""What a commit appends besides its values: at least a page for each table and index it touches."""


class Checkpoints:
    """A thread checkpointing the SQLite database at `path` in WAL mode, woken by the writer every `every` bytes."""

    def __init__(self, path: str, every: int | None = None):
        self._path = path
        self._every = CHECKPOINT_BYTES if every is None else every
        self._owed = 0
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def wrote(self, size: int) -> None:
        """A commit appended about `size` bytes to the log (called on the writer's thread)."""
        self._owed += size
        if self._owed >= self._every:
            self._owed = 0
            self._wake.set()

    def close(self) -> None:
        """Stop the thread once it is done with a checkpoint it is making; before the writer's connection closes, so
        that closing the last connection checkpoints what is left and removes the log, as SQLite does."""
        self._stopped = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=1.0)
        except sqlite3.Error as error:
            log.warning("cannot open %s for checkpoints (%s); the log grows until the store closes", self._path, error)
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    # The next wake tries again: what was not copied stays in the log, which only grows meanwhile.
                    log.warning("a checkpoint of %s failed: %s", self._path, error)
        finally:
            db.close()
