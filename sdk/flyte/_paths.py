"""Where local state lives: the cache, the blob store and run metadata, all under one home directory.

`FLYTE_HOME` moves it (tests point it at a temporary directory); the default is `~/.flyte`.
"""

from __future__ import annotations

import os
from pathlib import Path


def flyte_home() -> Path:
    """The root of all local state, created on first use."""
    configured = os.environ.get("FLYTE_HOME")
    home = Path(configured).expanduser() if configured else Path.home() / ".flyte"
    home.mkdir(parents=True, exist_ok=True)
    return home


def blob_dir() -> Path:
    """The local blob store: payloads over the inline limit, `File`s and `Dir`s."""
    path = flyte_home() / "blobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """One metadata directory per local run; a local `Run.url` points into it."""
    path = flyte_home() / "local" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_db_path() -> Path:
    """The SQLite file that holds the local task cache, shared by every process of this user."""
    return flyte_home() / "cache.db"


def private_dir(path: Path) -> Path:
    """A directory only this user can enter (0700), made if missing and tightened if it was looser."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a file only this user can read (0600) from its first byte: never briefly world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
