"""`flyte._kept_http.KeptConnection`, against a real HTTP/1.1 server on loopback that counts the connections it
accepts: requests share one connection, a connection the server dropped is replaced without losing the request, a
proxy in the environment is still used, and a forked child opens a connection of its own."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flyte._kept_http import KeptConnection


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, drop_after_answer: bool = False, answer_first: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.requests: list[tuple[str, bytes]] = []
        self.drop_after_answer = drop_after_answer
        """Close each connection after answering, without saying so (as an idle timeout would, later)."""
        self.answer_first = answer_first
        """Answer this many requests, then take the rest and never answer (a server stuck)."""
        self.stuck = threading.Event()
        self.lock = threading.Lock()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.requests.append((self.path, body))
            stuck = self.server.answer_first is not None and len(self.server.requests) > self.server.answer_first
        if stuck:
            self.server.stuck.wait(10)
            return
        answer = b"got " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if self.server.drop_after_answer:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(**options: bool | int) -> Iterator[_Server]:
    server = _Server(**options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stuck.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_posts_share_one_connection_and_each_gets_its_answer() -> None:
    with serving() as server:
        connection = KeptConnection(server.origin, timeout=5)
        answers = [connection.post("/v1/traces", f"batch {i}".encode(), {}) for i in range(3)]
        connection.close()
    assert [(a.status, a.body) for a in answers] == [(200, f"got batch {i}".encode()) for i in range(3)]
    assert server.requests == [("/v1/traces", f"batch {i}".encode()) for i in range(3)]
    assert server.connections == 1


def test_paths_are_posted_under_the_base_urls_own_path() -> None:
    with serving() as server:
        connection = KeptConnection(f"{server.origin}/flyte/", timeout=5)
        connection.post("/v1/traces", b"spans", {})
        connection.close()
    assert server.requests == [("/flyte/v1/traces", b"spans")]


def test_a_connection_the_server_dropped_is_replaced_and_the_request_is_sent_once() -> None:
    with serving(drop_after_answer=True) as server:
        connection = KeptConnection(server.origin, timeout=5)
        first = connection.post("/a", b"one", {})
        second = connection.post("/b", b"two", {})
        connection.close()
    assert (first.body, second.body) == (b"got one", b"got two")
    assert server.requests == [("/a", b"one"), ("/b", b"two")]
    assert server.connections == 2


def test_a_timeout_on_a_kept_connection_is_raised_not_sent_again() -> None:
    with serving(answer_first=1) as server:
        connection = KeptConnection(server.origin, timeout=0.5)
        connection.post("/a", b"answered", {})
        with pytest.raises(TimeoutError):
            connection.post("/b", b"taken, never answered", {})
        connection.close()
    # The server may be working on it: sending it again would make it two.
    assert server.requests == [("/a", b"answered"), ("/b", b"taken, never answered")]


def test_a_failure_on_a_new_connection_is_raised() -> None:
    with serving() as server:
        origin = server.origin
    connection = KeptConnection(origin, timeout=5)  # nothing listens there any more
    with pytest.raises(ConnectionRefusedError):
        connection.post("/v1/traces", b"lost", {})


def test_a_proxy_in_the_environment_is_used_as_urllib_would(monkeypatch: pytest.MonkeyPatch) -> None:
    with serving() as proxy:
        monkeypatch.setenv("http_proxy", proxy.origin)
        connection = KeptConnection("http://gateway.invalid:8080", timeout=5)
        answer = connection.post("/v1/traces", b"via the proxy", {})
    assert answer.body == b"got via the proxy"
    # A proxy is asked for the absolute URL: the request reached the proxy, not the (unresolvable) gateway.
    assert proxy.requests == [("http://gateway.invalid:8080/v1/traces", b"via the proxy")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_opens_its_own_connection() -> None:
    with serving() as server:
        connection = KeptConnection(server.origin, timeout=5)
        connection.post("/parent", b"before", {})
        pid = os.fork()
        if pid == 0:  # the child
            ok = connection.post("/child", b"child", {}).body == b"got child"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        after = connection.post("/parent", b"after", {})
        connection.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert after.body == b"got after"
    assert sorted(server.requests) == [("/child", b"child"), ("/parent", b"after"), ("/parent", b"before")]
    assert server.connections == 2
