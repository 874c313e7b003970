"""Which of several gateway replicas calls go to: the SDK's client, a worker's link, blob transfers and span exports,
and an agent's session all keep one `Replicas`.

`FLYTE_ENDPOINT` may list every replica (`a,b,c`, the agent's own first). Calls go to one until it refuses or resets
the connection, or answers 503 (a replica without its store): then to the next. Any other answer, an error
included, came from a working replica and moves nothing. How a caller repeats a call, and whether it may, is its
own: a blob transfer is sent again whole by `retry_transient` after its `RetryDelay` (content-addressed, so a
repeat changes nothing), a span batch goes on to the next replica at once (see `_otel.poster`).
"""

from __future__ import annotations

import threading
import urllib.error

from ._config import endpoints_of

__all__ = ["Replicas", "replica_down"]


class Replicas:
    """The replicas of one endpoint, and the one calls go to now; shared by threads (a worker's task and its
    span exporter's) and by a loop's tasks."""

    def __init__(self, endpoint: str):
        self.endpoints = [part.rstrip("/") for part in endpoints_of(endpoint)] or [endpoint.rstrip("/")]
        self._current = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self.endpoints[self._current]

    def fail_over(self, url: str) -> None:
        """A call to `url` (a replica's endpoint, or a URL under it) found its replica down: the next takes the
        calls, unless another caller moved on already."""
        with self._lock:
            if len(self.endpoints) > 1 and (url == self.current or url.startswith(f"{self.current}/")):
                self._current = (self._current + 1) % len(self.endpoints)

    def in_order(self) -> list[str]:
        """Every replica, the current one first (a worker's FLYTE_ENDPOINT: its agent's replica, then the rest)."""
        return self.endpoints[self._current :] + self.endpoints[: self._current]


def replica_down(error: BaseException) -> bool:
    """Whether `error` says the replica is not serving (so another may), rather than answering."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code == 503
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    # Refused: nothing listens. Reset or aborted (`http.client.RemoteDisconnected` among them): it went away.
    return isinstance(error, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError))
