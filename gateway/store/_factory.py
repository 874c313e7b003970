"""`open_store(url)`: the one place a store URL from configuration or the CLI becomes a `Store`."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from flyte._clock import SYSTEM_CLOCK, Clock

from ._protocol import Store

FORMS = (
    '"sqlite:PATH" (embedded SQLite file), "memory" (embedded, in memory, for tests) or "etcd://HOST:PORT" '
    '(several members: "etcd://IP:PORT,IP:PORT,IP:PORT")'
)


async def open_store(url: str, *, read_only: bool = False, clock: Clock = SYSTEM_CLOCK) -> Store:
    """Open the store `url` names. Async because the etcd client needs the running loop; it does not wait for
    etcd to answer, so a gateway can start while etcd is down and report itself not ready until it answers.

    `read_only` opens a SQLite file without touching it (a backup beside the gateway that owns it); etcd serves
    any number of clients, so it changes nothing there. `clock` runs an embedded store's lease deadlines (etcd keeps
    its own)."""
    if url == "memory":
        from ._sqlite import SqliteStore

        return SqliteStore(":memory:", clock=clock)
    if url.startswith("sqlite:"):
        from ._sqlite import SqliteStore

        path = url.removeprefix("sqlite:")
        if not path:
            raise ValueError(f"store URL {url!r} names no file; expected {FORMS}")
        if read_only:
            return SqliteStore(_expand(path), read_only=True)
        return SqliteStore(_prepare_file(path), clock=clock)
    if url.startswith("etcd://"):
        # Imported only here: the embedded default should not pay for loading gRPC.
        from ._etcd import EtcdStore

        (host, port), *more = _etcd_members(url)
        try:
            return EtcdStore(host, port, more=more)
        except ValueError as error:
            raise ValueError(f"store URL {url!r}: {error}") from None
    raise ValueError(f"unknown store URL {url!r}; expected {FORMS}")


def _etcd_members(url: str) -> list[tuple[str, int]]:
    """The members an `etcd://HOST:PORT[,HOST:PORT...]` URL names."""
    members: list[tuple[str, int]] = []
    for part in url.removeprefix("etcd://").rstrip("/").split(","):
        parts = urlsplit(f"etcd://{part.strip()}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path or parts.query:
            raise ValueError(f"store URL {url!r} is not etcd://HOST:PORT; expected {FORMS}")
        members.append((parts.hostname, port))
    return members


def _prepare_file(path: str) -> str:
    """`~` expanded and the directory made. Blocking, but quick, and SQLite does its work on the loop thread anyway."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def _expand(path: str) -> str:
    return os.path.expanduser(path)
