"""A worker's WebSocket to the gateway, shared by the links of the attempts the worker runs.

A one-shot worker runs one attempt and its socket opens with that attempt's token. A pool worker runs many, one
after another and side by side: they share one socket, each message saying its attempt's token, so an attempt
starts without a TCP connection and an HTTP upgrade of its own, and the gateway verifies a token once per socket
rather than once per attempt.

The socket opens when a link first needs it, with the newest attached link's token (the gateway refuses a token
whose attempt ended long ago). After a dropped connection it reconnects to the next replica with capped backoff,
has every link watch its parents again (the snapshot answers whatever finished meanwhile) and resends what was
unanswered: every request is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Protocol

import aiohttp
import pydantic

from ._replicas import Replicas
from ._retrying import RetryDelay
from ._wire import WORKER_PROTOCOL, Assignment, GatewayReply, WorkerMessage

log = logging.getLogger("flyte.worker")

STORE_UNAVAILABLE = "store_unavailable"
"""The error code of a request the gateway could not serve without its store: worth sending again."""


def request_retry() -> RetryDelay:
    """The backoff of a request the gateway could not serve yet (without its store, or while it is away)."""
    return RetryDelay(0.1, 5.0)


class LinkError(Exception):
    """The gateway refused a request on the worker connection."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class Attached(Protocol):
    """What the socket needs of a link: its token, and its part after a reconnect and in a children message."""

    token: str

    def watch_again(self) -> None: ...

    def children(self, reply: GatewayReply) -> None: ...


class RunsHere(Protocol):
    """A pool worker, able to start children of its own pool itself (`WorkerSubmit.room`, `GatewayReply.here`)."""

    def room(self) -> int:
        """How many more attempts it would start now."""

    def start(self, assignment: Assignment) -> None:
        """Start an attempt the gateway sent it: a child one of its attempts submitted, offering room."""


class GatewaySocket:
    def __init__(self, endpoint: str, session: aiohttp.ClientSession | None = None):
        """`session`: for the socket and its links' HTTP calls; without one the socket makes its own and closes it."""
        self.replicas = Replicas(endpoint)
        """Every gateway replica (FLYTE_ENDPOINT may list several): a lost connection or call moves to the next."""
        self.session = session
        self._owns_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[GatewayReply], WorkerMessage]] = {}
        self._links: list[Attached] = []
        self._parents: dict[tuple[str, str], Attached] = {}
        """(run, parent) -> the link waiting on that parent's children."""
        self._connected = asyncio.Event()
        self._attached = asyncio.Event()
        self._opening: asyncio.Task[None] | None = None
        self._closing = False
        self.runs_here: RunsHere | None = None
        """Set by a pool worker: its submissions offer room for children of its pool (see `room`)."""
        self._speaks_here = False
        """The gateway chose `WORKER_PROTOCOL`: it takes `room` and may answer with children to run `here`."""

    @property
    def endpoint(self) -> str:
        return self.replicas.current

    def attach(self, link: Attached) -> None:
        self._links.append(link)
        self._attached.set()

    def detach(self, link: Attached) -> None:
        with contextlib.suppress(ValueError):
            self._links.remove(link)
        if not self._links:
            self._attached.clear()
        for key in [key for key, held in self._parents.items() if held is link]:
            del self._parents[key]

    def route(self, run: str, parent: str, link: Attached) -> None:
        """Children messages about `parent` of `run` go to `link` (a retry of the same parent takes them over)."""
        self._parents[(run, parent)] = link

    async def close(self) -> None:
        self._closing = True
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        if self._ws is not None:
            await self._ws.close()
        if self.session is not None and self._owns_session:
            await self.session.close()

    async def ready(self) -> None:
        """Open the socket unless it is open or opening; return once it is connected."""
        if self._opening is None:
            if self.session is None:
                self.session = aiohttp.ClientSession()
            self._opening = asyncio.create_task(self._serve())
        await self._connected.wait()

    def room(self) -> int:
        """The room a submission offers: a pool worker's free slots, where the gateway takes the offer."""
        if self.runs_here is None or not self._speaks_here:
            return 0
        return self.runs_here.room()

    def start_here(self, assignments: list[Assignment]) -> None:
        """Start the children the gateway sent for submissions that offered room (`GatewayReply.here`)."""
        if self.runs_here is None:
            return  # not offered; an attempt's agent holds its copy and runs it after `HELD_SECONDS`
        for assignment in assignments:
            self.runs_here.start(assignment)

    async def send(self, message: WorkerMessage) -> None:
        """Send without waiting for an answer."""
        await self.ready()
        await self._send_raw(message)

    async def request(self, message: WorkerMessage) -> GatewayReply:
        """Send and wait for the answer; a request the gateway could not serve without its store is sent again."""
        retry = request_retry()
        while True:
            request_id = next(self._ids)
            message = message.model_copy(update={"id": request_id})
            future: asyncio.Future[GatewayReply] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = (future, message)
            try:
                await self.send(message)
                reply = await future
            finally:
                self._pending.pop(request_id, None)
            if reply.type != "error":
                return reply
            if reply.code != STORE_UNAVAILABLE:
                raise LinkError(reply.code or "error", reply.message or "")
            # The gateway lost its store for a while: every request is idempotent, so send it again until it is back.
            delay = retry.next()
            log.warning("the gateway's store is unavailable; retrying in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _send_raw(self, message: pydantic.BaseModel) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
            await self._ws.send_str(message.model_dump_json())

    async def _serve(self) -> None:
        while True:
            await self._open()
            assert self._ws is not None
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                self._dispatch(GatewayReply.model_validate_json(message.data))
            if self._closing:
                return
            self._connected.clear()
            self.replicas.fail_over(self.endpoint)
            log.warning("lost the gateway connection; reconnecting to %s", self.endpoint)

    async def _open(self) -> None:
        assert self.session is not None
        retry = RetryDelay(0.05, 5.0)
        while True:
            # Opened by the newest attempt's token (an older one's attempt may have ended long ago); with no attempt
            # running here, nothing needs the socket until one starts.
            await self._attached.wait()
            token = self._links[-1].token
            try:
                self._ws = await self.session.ws_connect(
                    self.endpoint + "/api/v1/workers/connect",
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=15.0,
                    max_msg_size=64 * 1024 * 1024,
                    protocols=(WORKER_PROTOCOL,),
                )
                self._speaks_here = self._ws.protocol == WORKER_PROTOCOL
                break
            except aiohttp.ClientError as error:
                self.replicas.fail_over(self.endpoint)
                delay = retry.next()
                log.warning("cannot reach the gateway (%s); retrying in %.2fs", error, delay)
                await asyncio.sleep(delay)
        self._connected.set()
        for link in list(self._links):
            link.watch_again()
        for _, message in list(self._pending.values()):
            await self._send_raw(message)

    def _dispatch(self, reply: GatewayReply) -> None:
        if reply.here:
            # Started as the message is read (a `here` message comes ahead of its submission's answer).
            self.start_here(reply.here)
        if reply.type == "children" and reply.run is not None and reply.parent is not None:
            link = self._parents.get((reply.run, reply.parent))
            if link is not None:
                link.children(reply)
        if not reply.id:
            return
        pending = self._pending.get(reply.id)
        if pending is not None and not pending[0].done():
            pending[0].set_result(reply)
