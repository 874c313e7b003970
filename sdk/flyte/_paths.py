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
