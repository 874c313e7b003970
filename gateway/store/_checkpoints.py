"""The SQLite store's checkpoints, made by a thread of their own instead of inside a commit.

SQLite copies the write-ahead log into the database file (a checkpoint) inside the commit that takes the log past
1,000 pages, and fsyncs the database file there: ~5-15 ms while the gateway's event loop waits. In a 10,000-way
fan-out those commits held the loop for ~0.7 s of a 13 s run (bench/, docs/performance.md). Here the writer's
connection does not checkpoint by itself (`wal_autocheckpoint=0`). It tells `Checkpoints.due` roughly how many
bytes each commit appended, and every `CHECKPOINT_BYTES` a thread checkpoints on a connection of its own: PASSIVE,
so the writer never waits for it, and Python's sqlite3 module lets go of the GIL while SQLite works.

SQLite starts the log again from its beginning only at a write that finds every frame in it copied, and the writer
appends while the thread copies: alone, the thread never gets there and the log grows for as long as the writes go
on (270 MB for 90 MB of writes). So once the thread has copied the bulk, the writer finishes the checkpoint between
two of its commits (`due` says when): it copies the few frames appended meanwhile, and its next commit starts the
log again. Should the thread fall behind (a busy machine), the writer checkpoints by itself once `BEHIND` times
`CHECKPOINT_BYTES` are waiting, as SQLite would have: the log stays within a few times the length SQLite's own
checkpoints keep it. Durability is SQLite's own (a checkpoint fsyncs the log before copying it).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("flyte.gateway.store")

CHECKPOINT_BYTES = 4 * 2**20
"""Bytes appended to the log between checkpoints: SQLite's own default (1,000 pages of 4 KiB)."""
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
"""A checkpoint that never waits for the writer (the thread's) nor for readers: its row says (busy, frames in the
log, frames copied)."""
_ROUNDS = 4
"""Checkpoints one wake of the thread makes at most."""
BEHIND = 4
"""How many times `CHECKPOINT_BYTES` may wait for the thread before the writer checkpoints by itself."""
PAGE = 4096
"""What a commit appends besides its values: at least a page for each table and index it touches."""


class Checkpoints:
    """A thread checkpointing the SQLite database at `path` in WAL mode, woken by the writer every
    `CHECKPOINT_BYTES`."""

    def __init__(self, path: str):
        self._path = path
        self._owed = 0
        """Bytes appended since the last complete checkpoint."""
        self._asked = False
        self._copied = False
        """The thread copied the log as it was: the writer's turn to finish the checkpoint."""
        self._wake = threading.Event()
        self._stopped = False
        self.rounds = 0
        """Checkpoints the thread made."""
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def due(self, size: int) -> bool:
        """A commit appended about `size` bytes to the log (called on the writer's thread, after the commit); True
        when the writer should checkpoint now, between commits (a PASSIVE checkpoint on its own connection, then
        `made`): to finish what the thread copied, or because the thread is behind."""
        self._owed += size
        if self._copied or self._owed >= BEHIND * CHECKPOINT_BYTES:
            return True
        if self._owed >= CHECKPOINT_BYTES and not self._asked:
            self._asked = True
            self._wake.set()
        return False

    def made(self, complete: bool) -> None:
        """The writer checkpointed; `complete`: every frame is copied, and its next commit starts the log again
        (not when the thread was checkpointing at that moment: the next commit tries again)."""
        if complete:
            self._owed, self._asked, self._copied = 0, False, False

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
            log.warning("cannot open %s for checkpoints (%s); the writer checkpoints alone", self._path, error)
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    self._copy(db)
                except sqlite3.Error as error:
                    # The next wake tries again: what was not copied stays in the log, which only grows meanwhile.
                    log.warning("a checkpoint of %s failed: %s", self._path, error)
                else:
                    self.rounds += 1
                    self._copied = True
        finally:
            db.close()

    def _copy(self, db: sqlite3.Connection) -> None:
        """Checkpoint, then again while the writer appended during the last round (a few rounds at most): each is
        shorter than the one before, and what is left for the writer to copy between its commits is the least."""
        frames = -1
        for _ in range(_ROUNDS):
            _, in_log, _ = db.execute(CHECKPOINT).fetchone()
            if in_log == frames:
                return
            frames = in_log
