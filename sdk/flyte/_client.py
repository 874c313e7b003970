"""The SDK's client for the gateway's HTTP API.

Async methods on one aiohttp session per event loop; sync code (the CLI, `flyte.deploy` from a script) calls them
through the SDK's own loop thread with `call_sync`. Errors come back as `GatewayError` carrying the gateway's
`{code, message}`; callers turn the ones users should catch into `flyte.errors` types.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import io
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from pydantic import TypeAdapter

from ._codec import BlobBackend
from ._config import Config, current_config
from ._env import env_float
from ._replicas import Replicas, replica_down
from ._retrying import RetryDelay
from ._wire import (
    CHECKSUM_HEADER,
    AbortRequest,
    ActionSummary,
    BlobTransfer,
    ClusterRecord,
    DeployRequest,
    PartChecksums,
    Phase,
    RunCreateRequest,
    RunSummary,
    TaskVersion,
)

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.trace import Span

T = TypeVar("T")
_REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE"})
"""Methods whose repetition changes nothing (PUT of a blob is by digest), so a cut-off one goes to another replica."""
M = TypeVar("M", bound=pydantic.BaseModel)


class GatewayError(Exception):
    """The gateway answered with an error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class GatewayUnreachableError(GatewayError):
    """No answer from the gateway at all (refused, unknown host, TLS, timed out): one line saying which."""

    def __init__(self, endpoint: str, error: Exception):
        super().__init__(503, "unreachable", unreachable_message(endpoint, error))

    def __str__(self) -> str:
        # The status and code are ours, not the gateway's: showing "(503 unreachable)" would suggest it answered.
        return self.message


def unreachable_message(endpoint: str, error: Exception) -> str:
    """`cannot reach the gateway at URL (connection refused); is it running? ...` from an aiohttp connection error.

    aiohttp's own text names `ssl:default` even for http URLs and repeats the address; the cause is what helps.
    """
    import socket
    import ssl
    from urllib.parse import urlsplit

    import aiohttp

    cause: BaseException = getattr(error, "os_error", None) or error
    host = urlsplit(endpoint).hostname or ""
    hint = "is it running?" + (" flyte rig up starts one" if host in ("127.0.0.1", "localhost", "::1") else "")
    if isinstance(cause, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(cause, socket.gaierror):
        why, hint = f"host {host} not found", "check the endpoint in your config"
    elif isinstance(cause, ssl.SSLError) or isinstance(error, aiohttp.ClientSSLError):
        reason = getattr(cause, "reason", None) or type(cause).__name__
        why, hint = f"TLS failed: {reason}", "for a plain-http gateway use an http:// endpoint (insecure: true)"
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        why = "it closed the connection without answering"
    elif isinstance(cause, TimeoutError) or isinstance(error, aiohttp.ServerTimeoutError):
        why = "timed out"
    else:
        why = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return f"cannot reach the gateway at {endpoint} ({why}); {hint}"


class GatewayClient:
    def __init__(self, config: Config):
        if config.endpoint is None:
            raise ValueError("no gateway endpoint is configured (flyte.init(endpoint=...) or a config file)")
        self.replicas = Replicas(config.endpoint)
        """The gateway's replicas; requests go to one until it stops answering, then to the next."""
        self.project = config.project
        self.domain = config.domain
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        """The replica requests go to now."""
        return self.replicas.current

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp is imported on first use: commands that never call the gateway should not pay for it.
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=60, connect=10)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: pydantic.BaseModel | None = None,
        data: bytes | None = None,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {"params": params}
        if json_body is not None:
            kwargs["data"] = io.BytesIO(json_body.model_dump_json().encode())
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif data is not None:
            # A stream, not raw bytes: aiohttp then sends large bodies without holding the loop.
            kwargs["data"] = io.BytesIO(data)
            kwargs["headers"] = {"Content-Type": "application/octet-stream"}
        import aiohttp

        for attempt in range(len(self.replicas.endpoints)):
            endpoint = self.endpoint
            if attempt and isinstance(kwargs.get("data"), io.BytesIO):
                kwargs["data"].seek(0)
            try:
                async with self._http().request(method, f"{endpoint}{path}", **kwargs) as response:
                    if response.status >= 400:
                        try:
                            body = await response.json(content_type=None)
                            raise GatewayError(response.status, body["code"], body["message"])
                        except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
                            raise GatewayError(response.status, "http_error", await response.text()) from None
                    if response.content_type == "application/json":
                        return await response.json()
                    return await response.read()
            except aiohttp.ClientConnectionError as error:
                # Another replica may answer. A request that never reached this one (no connection) is safe to send
                # again anywhere; one cut off midway is sent again only if repeating it changes nothing.
                never_sent = isinstance(error, aiohttp.ClientConnectorError)
                if attempt + 1 < len(self.replicas.endpoints) and (never_sent or method in _REPEATABLE):
                    self.replicas.fail_over(endpoint)
                    continue
                self.replicas.fail_over(endpoint)
                raise GatewayUnreachableError(endpoint, error) from None
        raise AssertionError("unreachable: the loop returns or raises")

    async def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(await self.request(method, path, **kwargs))

    async def _models(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(await self.request(method, path, **kwargs))  # type: ignore[valid-type]

    def _scope(self, project: str | None = None, domain: str | None = None) -> dict[str, str]:
        return {"project": project or self.project, "domain": domain or self.domain}

    def run_params(self, **more: str) -> dict[str, str]:
        """Query parameters of a run-scoped path: this client's project and domain (a run's chosen name is unique
        only within them), and `more`."""
        return {**self._scope(), **more}

    # -- blobs ----------------------------------------------------------------------------------------------

    async def put_blob(self, data: bytes, project: str | None = None) -> str:
        """Upload bytes as a blob of `project` (default: the client's); tokens of that project may read it.
        Straight into the gateway's object store when it has one (see `GatewayBlobs`), else through the gateway."""
        digest = hashlib.sha256(data).hexdigest()
        params = {"project": project or self.project}
        transfer = await self._blob_transfer("POST", f"/api/v1/blobs/{digest}/uploads", params)
        if transfer is not None and transfer.upload is not None:
            await store_request("PUT", transfer.url, data, transfer.headers)
            await self.request("POST", f"/api/v1/blobs/{digest}/uploads/{transfer.upload}", params=params)
            return digest
        await self.request("PUT", f"/api/v1/blobs/{digest}", data=data, params=params)
        return digest

    async def _blob_transfer(self, method: str, path: str, params: dict[str, str] | None = None) -> BlobTransfer | None:
        if self.endpoint in _NO_DIRECT:
            return None
        try:
            return BlobTransfer.model_validate(await self.request(method, path, params=params))
        except GatewayError as error:
            if error.status == 409:
                _NO_DIRECT.add(self.endpoint)
            if error.status in (404, 405, 409):
                return None
            raise

    async def has_blob(self, digest: str, project: str | None = None) -> bool:
        """Whether the gateway stores the blob for `project` (default: the client's)."""
        try:
            await self.request("HEAD", f"/api/v1/blobs/{digest}", params={"project": project or self.project})
        except GatewayError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def get_blob(self, digest: str) -> bytes:
        transfer = await self._blob_transfer("GET", f"/api/v1/blobs/{digest}/url")
        if transfer is not None:
            return await store_request("GET", transfer.url)
        data = await self.request("GET", f"/api/v1/blobs/{digest}")
        assert isinstance(data, bytes)
        return data

    # -- tasks --------------------------------------------------------------------------------------------------

    async def deploy(self, request: DeployRequest) -> list[TaskVersion]:
        return await self._models(TaskVersion, "POST", "/api/v1/deployments", json_body=request)

    async def list_tasks(self) -> list[TaskVersion]:
        return await self._models(TaskVersion, "GET", "/api/v1/tasks", params=self._scope())

    async def get_task(self, name: str, version: str | None = None) -> TaskVersion:
        params = self._scope() | ({"version": version} if version else {})
        return await self._model(TaskVersion, "GET", f"/api/v1/tasks/{name}", params=params)

    async def list_task_versions(self, name: str) -> list[TaskVersion]:
        return await self._models(TaskVersion, "GET", f"/api/v1/tasks/{name}/versions", params=self._scope())

    # -- runs and actions ---------------------------------------------------------------------------------------

    async def create_run(self, request: RunCreateRequest) -> RunSummary:
        return await self._model(RunSummary, "POST", "/api/v1/runs", json_body=request)

    # A run is named within this client's project and domain (`?project=&domain=`); its identity works too.
    async def get_run(self, name: str) -> RunSummary:
        return await self._model(RunSummary, "GET", f"/api/v1/runs/{name}", params=self._scope())

    async def list_runs(
        self,
        phase: Phase | None = None,
        task: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        params = [*self._scope().items(), ("limit", str(limit))]
        if phase is not None:
            params.append(("phase", phase.value))
        if task is not None:
            params.append(("task", task))
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        return await self._models(RunSummary, "GET", "/api/v1/runs", params=params)

    async def abort_run(self, name: str, reason: str) -> RunSummary:
        return await self._model(
            RunSummary,
            "POST",
            f"/api/v1/runs/{name}/abort",
            json_body=AbortRequest(reason=reason),
            params=self._scope(),
        )

    async def list_actions(self, run: str, parent: str | None = None) -> list[ActionSummary]:
        params = {**self._scope(), **({"parent": parent} if parent else {})}
        return await self._models(ActionSummary, "GET", f"/api/v1/runs/{run}/actions", params=params)

    async def list_clusters(self) -> list[ClusterRecord]:
        return await self._models(ClusterRecord, "GET", "/api/v1/clusters")


_CLIENTS: dict[tuple[int, str | None, str | None, str, str], GatewayClient] = {}


def _close_clients() -> None:
    from ._run import sdk_loop

    for client in _CLIENTS.values():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(client.close(), sdk_loop.get()).result(timeout=2)
    _CLIENTS.clear()


atexit.register(_close_clients)


def client_for(config: Config | None = None) -> GatewayClient:
    """The client of the current config, one per event loop thread that uses it."""
    config = config or current_config()
    from ._run import sdk_loop

    key = (id(sdk_loop.get()), config.endpoint, config.api_key, config.project, config.domain)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = GatewayClient(config)
    return client


def call_sync(call: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine on the SDK's loop thread from sync code."""
    from ._run import sdk_loop

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        future = asyncio.run_coroutine_threadsafe(call, sdk_loop.get())
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller abandons the call: it must not go on (a watch printing progress) behind it.
            future.cancel()
            raise
    call.close()
    raise RuntimeError("this blocks; from async code use the async client methods")


class GatewayBlobs(BlobBackend):
    """Out-of-line values through the gateway's blob store (`blob:<sha256>` references), so a value written in one
    cluster is readable in another. Sync on purpose: the codec runs inside task code, sync or async."""

    remote = True

    def __init__(self, endpoint: str, token: str | None, project: str | None = None, cluster: str | None = None):
        self.replicas = Replicas(endpoint)
        """Every replica, in the order given (a worker's agent lists its own first); a transfer the current one does
        not serve is sent again whole, by `retry_transient`, to the next."""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        where = {"cluster": cluster} if cluster else {}
        query = ({"project": project} if project else {}) | where
        self._query = f"?{urllib.parse.urlencode(query)}" if query else ""
        """The project a blob is written for (a worker's token names its own, so a worker leaves it out), and the
        cluster a worker runs on: its blobs go to that cluster's store, and are read from it first."""
        self._where = f"?{urllib.parse.urlencode(where)}" if where else ""
        self._broken: dict[str, tuple[str, str]] = {}
        """Multipart uploads that broke, by digest: (upload, the store's id), resumed by the next try."""

    def with_token(self, token: str) -> GatewayBlobs:
        """This store for another token's transfers, sharing which replica answers (a pool worker's attempts)."""
        # What `copy.copy` does, without its reduce protocol: that was 5% of a busy pool worker (twice per attempt).
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._headers = {"Authorization": f"Bearer {token}"}
        other._broken = {}
        return other

    @property
    def endpoint(self) -> str:
        """The replica transfers go to now."""
        return self.replicas.current

    def _with(self, **more: str) -> str:
        return self._query + ("&" if self._query else "?") + urllib.parse.urlencode(more)

    def put(self, data: bytes) -> str:
        return retry_transient(lambda: self._put(data))

    def get(self, ref: str) -> bytes:
        return retry_transient(lambda: self._get(ref))

    def put_file(self, path: Path) -> str:
        return retry_transient(lambda: self._put_file(path))

    def _put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blob = f"{self.endpoint}/api/v1/blobs/{digest}"
        transfer = self._transfer(urllib.request.Request(f"{blob}/uploads{self._query}", method="POST"))
        if transfer is not None and transfer.upload is not None:
            # Straight into the object store (no token of ours goes there; the store checks the sha256 the URL is
            # signed with), then the gateway makes it the blob.
            _call(urllib.request.Request(transfer.url, data=data, method="PUT", headers=transfer.headers))
            _call(urllib.request.Request(f"{blob}/uploads/{transfer.upload}{self._query}", method="POST"), self)
            return f"blob:{digest}"
        request = urllib.request.Request(
            f"{blob}{self._query}", data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
        )
        _call(request, self)
        return f"blob:{digest}"

    def _get(self, ref: str) -> bytes:
        if not ref.startswith("blob:"):
            return super().get(ref)
        blob = f"{self.endpoint}/api/v1/blobs/{ref.removeprefix('blob:')}"
        transfer = self._transfer(urllib.request.Request(f"{blob}/url{self._where}"))
        if transfer is not None:
            with _transfer_span(ref, transfer) as span:
                data = _call(urllib.request.Request(transfer.url))
                _count(span, len(data))
            return data
        return _call(urllib.request.Request(blob), self)

    def _put_file(self, path: Path) -> str:
        """Stream a file to the store through a presigned URL (it is not read into memory), else `put` it."""
        from .io._blobs import file_sha256

        size = path.stat().st_size
        if size > MULTIPART_BYTES and self.endpoint not in _NO_MULTIPART:
            digest, parts = _file_digests(path, PART_BYTES)
            if self._put_parts(path, digest, parts):
                return f"blob:{digest}"
        else:
            digest = file_sha256(path)
        blob = f"{self.endpoint}/api/v1/blobs/{digest}"
        transfer = self._transfer(urllib.request.Request(f"{blob}/uploads{self._query}", method="POST"))
        if transfer is None or transfer.upload is None:
            return self._put(path.read_bytes())
        with path.open("rb") as body:
            request = urllib.request.Request(transfer.url, data=body, method="PUT", headers=transfer.headers)
            request.add_header("Content-Length", str(size))
            _call(request)
        _call(urllib.request.Request(f"{blob}/uploads/{transfer.upload}{self._query}", method="POST"), self)
        return f"blob:{digest}"

    def _put_parts(self, path: Path, digest: str, checksums: list[str]) -> bool:
        """Send a large file in parts, `PARTS_IN_FLIGHT` at once, each to a presigned URL of its own, signed with
        the part's sha256 (`checksums`, base64) so the store takes only those bytes; a try after a broken one sends
        only the parts the store lacks. False where the gateway offers no multipart upload."""
        from concurrent.futures import ThreadPoolExecutor

        blob = f"{self.endpoint}/api/v1/blobs/{digest}"
        count = len(checksums)
        body = PartChecksums(sha256=checksums).model_dump_json().encode()
        broken = self._broken.get(digest)
        if broken is None:
            ask = f"{blob}/uploads{self._with(parts=str(count))}"
        else:
            ask = f"{blob}/uploads/{broken[0]}/parts{self._with(parts=str(count), multipart=broken[1])}"
        try:
            request = urllib.request.Request(ask, data=body, method="POST", headers=_JSON)
            transfer = BlobTransfer.model_validate_json(_call(request, self))
        except urllib.error.HTTPError as error:
            if error.code == 404 and broken is not None:
                del self._broken[digest]  # the store forgot it (collected): start afresh on the next try
                raise
            if error.code in (404, 405, 409):
                _NO_MULTIPART.add(self.endpoint)
                return False
            raise
        if transfer.upload is None or transfer.multipart is None:
            _NO_MULTIPART.add(self.endpoint)  # a gateway from before multipart: it answered one URL
            return False
        self._broken[digest] = (transfer.upload, transfer.multipart)

        def send(number: int) -> None:
            with path.open("rb") as source:
                source.seek((number - 1) * PART_BYTES)
                piece = source.read(PART_BYTES)
            checked = {CHECKSUM_HEADER: checksums[number - 1]}
            _call(urllib.request.Request(transfer.parts[number], data=piece, method="PUT", headers=checked))

        with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
            list(pool.map(send, sorted(transfer.parts)))
        commit = f"{blob}/uploads/{transfer.upload}{self._with(multipart=transfer.multipart, parts=str(count))}"
        _call(urllib.request.Request(commit, method="POST"), self)
        del self._broken[digest]
        return True

    def download(self, ref: str, write: Callable[[bytes], object], offset: int = 0) -> None:
        """Stream the blob to `write`, a megabyte at a time, from the object store when the gateway has one; from
        byte `offset` on when a broken download resumes (a ranged GET: only the missing bytes cross again)."""
        if not ref.startswith("blob:"):
            super().download(ref, write, offset)
            return
        blob = f"{self.endpoint}/api/v1/blobs/{ref.removeprefix('blob:')}"
        transfer = self._transfer(urllib.request.Request(f"{blob}/url{self._where}"))
        request = urllib.request.Request(transfer.url if transfer is not None else blob)
        if transfer is None:
            for name, value in self._headers.items():
                request.add_header(name, value)
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        size = 0
        with (
            _transfer_span(ref, transfer) as span,
            _failing_over(self if transfer is None else None, request.full_url),
            urllib.request.urlopen(request, timeout=_TRANSFER_SECONDS) as response,
        ):
            # A server that ignores the range sends the whole blob: the bytes already written are skipped.
            skip = offset if offset and response.status != 206 else 0
            while chunk := response.read(1 << 20):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                size += len(chunk)
                write(chunk)
            _count(span, size)

    def _transfer(self, request: urllib.request.Request) -> BlobTransfer | None:
        """A presigned URL for a direct transfer, or None where the gateway offers none (a directory store, an
        older gateway, or a blob it does not have: the blob API then answers as it always did)."""
        if self.endpoint in _NO_DIRECT:
            return None
        try:
            return BlobTransfer.model_validate_json(_call(request, self))
        except urllib.error.HTTPError as error:
            if error.code == 409:
                _NO_DIRECT.add(self.endpoint)
            if error.code in (404, 405, 409):
                return None
            raise


@contextlib.contextmanager
def _transfer_span(ref: str, transfer: BlobTransfer | None) -> Iterator[Span | None]:
    """A `blob download` span in the worker's trace: which store the bytes came from, whether that crossed from
    another cluster's store, and (set by `_count`) how many bytes."""
    from . import _otel

    attributes: dict[str, str | bool] = {
        "flyte.blob": ref.removeprefix("blob:")[:16],
        "flyte.blob.direct": transfer is not None,
    }
    if transfer is not None:
        attributes |= {"flyte.blob.store": transfer.store or "", "flyte.blob.cross_region": transfer.remote}
    span = _otel.start_span("blob download", attributes)
    try:
        yield span
    except BaseException as error:
        _otel.end_span(span, f"{type(error).__name__}: {error}"[:1024])
        raise
    _otel.end_span(span)


def _count(span: Span | None, size: int) -> None:
    if span is not None:
        span.set_attribute("flyte.blob.bytes", size)


async def store_request(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """A request to the object store through a presigned URL: a session of its own, so no token of ours goes there;
    `headers` are those the URL was signed with (the checksum the store checks the bytes against)."""
    import aiohttp

    body = io.BytesIO(data) if data is not None else None
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=headers) as response:
        if response.status >= 400:
            raise GatewayError(response.status, "object_store", (await response.text())[:500])
        return await response.read()


def _file_digests(path: Path, part: int) -> tuple[str, list[str]]:
    """The file's sha256 (hex) and each `part`-sized piece's (base64, as S3's checksum header spells it), in one
    read of the file."""
    whole = hashlib.sha256()
    pieces: list[str] = []
    with path.open("rb") as source:
        while piece := source.read(part):
            whole.update(piece)
            pieces.append(base64.b64encode(hashlib.sha256(piece).digest()).decode())
    return whole.hexdigest(), pieces


_JSON = {"Content-Type": "application/json"}
MULTIPART_BYTES = 64 * 1024 * 1024
"""A file larger than this goes to an object store in parts (S3's minimum part is 5 MiB)."""
PART_BYTES = 16 * 1024 * 1024
PARTS_IN_FLIGHT = 4
"""Parts sent at once: at most this many parts of a file are in memory."""
_NO_MULTIPART: set[str] = set()
"""Gateways whose store takes no multipart upload (a directory, or no key pair to sign parts with)."""
_NO_DIRECT: set[str] = set()
"""Gateways that said their blob store offers no direct transfers (a directory): asked once per process."""


def store_outage_seconds() -> float:
    """How long a blob transfer keeps retrying through an outage (the store or the gateway unreachable, or a 503):
    `FLYTE_STORE_OUTAGE_SECONDS`, 60 by default. Read per transfer, so a bad value fails the transfer that meets it
    with a message naming it, never `import flyte`."""
    return env_float("FLYTE_STORE_OUTAGE_SECONDS", 60.0, above=False)


R = TypeVar("R")


def retry_transient(transfer: Callable[[], R], within: float | None = None) -> R:
    """Run a whole blob transfer again (a fresh presigned URL each time) while it fails transiently, up to
    `within` seconds (`store_outage_seconds`). An outage that lasts longer is a `RuntimeSystemError` (in a worker,
    the attempt is retried on the system budget, never the user's); any other failure is raised as it is."""
    budget = store_outage_seconds() if within is None else within
    deadline = time.monotonic() + budget
    delays = RetryDelay(0.2, 5.0)
    while True:
        try:
            return transfer()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if not _transient(error):
                raise
            if time.monotonic() > deadline:
                from .errors import RuntimeSystemError

                message = f"the blob store stayed unreachable for {budget:g}s: {error}"
                raise RuntimeSystemError("BlobStoreUnavailable", message) from error
            time.sleep(delays.next())


def _transient(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (502, 503, 504)
    return True


def _call(request: urllib.request.Request, gateway: GatewayBlobs | None = None) -> bytes:
    """Send `request` (with the gateway's token when it goes to the gateway); returns the body."""
    if gateway is not None:
        for name, value in gateway._headers.items():
            request.add_header(name, value)
    with (
        _failing_over(gateway, request.full_url),
        urllib.request.urlopen(request, timeout=_TRANSFER_SECONDS) as response,
    ):
        body: bytes = response.read()
        return body


@contextlib.contextmanager
def _failing_over(gateway: GatewayBlobs | None, url: str) -> Iterator[None]:
    """A gateway replica that is down hands the transfers to the next; the error goes on to `retry_transient`,
    which sends the whole transfer again (now there). An object store's URL (no `gateway`) has no other replica."""
    try:
        yield
    except OSError as error:  # urllib's errors, and a reset while the body is read
        if gateway is not None and replica_down(error):
            gateway.replicas.fail_over(url)
        raise


_TRANSFER_SECONDS = 300
