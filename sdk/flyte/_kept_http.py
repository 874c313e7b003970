"""POST requests to one origin over one kept-open HTTP/1.1 connection, for a sender that posts every half second from
a thread (a process's spans, `flyte._otel.poster`).

`urllib.request` opens a connection per request: for spans, twice a second per worker, a TCP handshake each time,
and behind TLS a TLS handshake too, for every worker a cluster runs. Here the connection stays open between
requests. What urllib decides stays as it was: certificates are checked against the same defaults
(`http.client`'s, which urllib uses), and where a proxy applies to the URL (`HTTP(S)_PROXY`, `NO_PROXY`) the request
goes through urllib as before, a connection each. A forked child never writes on its parent's connection: it opens
its own.
"""

from __future__ import annotations

import http.client
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import weakref
from typing import NamedTuple


class Answer(NamedTuple):
    status: int
    body: bytes


class KeptConnection:
    """POSTs under one base URL (`scheme://host:port[/prefix]`), one at a time, over a connection kept open between
    them.

    A kept connection the server closed in the meantime (its idle timeout) fails the next request before it reaches
    the server; that request is sent once more on a new connection. A failure on a new connection, or a timeout, is
    raised."""

    def __init__(self, base: str, timeout: float):
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        # Its own opener, built with the proxies of now: `urlopen`'s is built once per process, at its first use.
        self._via_proxy = urllib.request.build_opener() if _proxied(parts.scheme, parts.hostname) else None
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        _OPEN.add(self)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """The answer to one POST of `body` to `path` under the base URL; raises OSError (or
        `http.client.HTTPException`) when there is none. Any status is an answer: none is raised."""
        path = self._prefix + path
        if self._via_proxy is not None:
            return self._through_urllib(self._via_proxy, path, body, headers)
        with self._lock:
            while True:
                kept = self._conn is not None
                conn = self._conn or self._connect()
                self._conn = None
                try:
                    conn.request("POST", path, body, headers)
                    response = conn.getresponse()
                    answer = Answer(response.status, response.read())
                except (OSError, http.client.HTTPException) as error:
                    conn.close()
                    if kept and isinstance(error, (ConnectionError, http.client.HTTPException)):
                        continue  # closed under us, not slow: a timeout is not sent again
                    raise
                if response.will_close:
                    conn.close()
                else:
                    self._conn = conn
                return answer

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _through_urllib(
        self, opener: urllib.request.OpenerDirector, path: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        request = urllib.request.Request(self._origin + path, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=self._timeout) as response:
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.read())


def _proxied(scheme: str, host: str) -> bool:
    """Whether urllib would send a request for `scheme://host` through a proxy."""
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


_OPEN: weakref.WeakSet[KeptConnection] = weakref.WeakSet()


def _forget_in_child() -> None:
    """After a fork, in the child: the kept sockets are the parent's (closing one here would not end it, writing on
    one would interleave two processes' requests), and a lock may have been held by a thread the child lacks."""
    for connection in list(_OPEN):
        connection._conn = None
        connection._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
