"""The Kubernetes backend: each attempt runs as one pod (kubernetes-asyncio), in the agent's namespace.

Launch. A Secret and a pod, both named after the attempt key (`_kube_pods.pod_name`), so a launch repeated after
a lost response, or by a restarted agent, finds its own pod: a 409 on create is success. The Secret carries the
assignment with its run token; the pod reads it through `secretKeyRef` and fetches its code bundle from the
gateway. Kubernetes enforces the limits (requests, limits, activeDeadlineSeconds); the backend only watches.

Watching. One watch on the namespace's pods that this agent owns (by label) feeds every handle. The loop is
list, then watch from the list's resourceVersion; when the watch drops (API server restart, timeout, network),
it lists again, which settles whatever changed meanwhile, including pods that vanished, then watches again. A
handle only treats a missing pod as lost once its create has returned before the list began, so a list racing a
create cannot lose a pod.

Output. When a pod's container has started, its log is followed (`follow`, `timestamps`) and shipped as stdout;
a dropped log stream is reopened from the last timestamp seen. An attempt's `wait` answers only after its log has
been read to the end, so the output is shipped before the exit is reported.

Ending. `_kube_pods.classify` maps pod states to `Exit`s (OOMKilled, eviction, node loss, image pull failures).
`kill` deletes the pod and waits for it to go. A finished pod is deleted `gc_after_seconds` later (kept a while
for `kubectl describe`), and so is a finished pod of this agent found at start that nobody tracks.

Capacity. Every `capacity_interval`, nodes' allocatable (Ready and schedulable nodes) less the requests of every
pod that is not finished, in all namespaces: that is what the scheduler will let new pods have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from flyte._background import Background
from flyte._retrying import RetryDelay

from . import _kube_pods as pods
from ._protocol import Capacity, Exit, ExitKind, LaunchSpec, OutputSink

log = logging.getLogger("flyte.agent.kubernetes")

DEFAULT_IMAGE = "flyte-federation-runtime:latest"
"""What `deploy/kind/Dockerfile` builds: the runtime with the SDK, for environments without an image URI."""
_LOG_DRAIN_SECONDS = 10.0
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubernetesHandle:
    """One attempt's pod; `wait` answers how it ended, `kill` deletes it."""

    def __init__(self, spec: LaunchSpec, backend: KubernetesBackend, on_output: OutputSink) -> None:
        self.key = spec.key
        self.name = pods.pod_name(spec.key)
        self._backend = backend
        self._on_output = on_output
        self._exit: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._stop: tuple[ExitKind, str] | None = None
        self._ending: asyncio.Task[None] | None = None
        self._logs: asyncio.Task[None] | None = None
        self._last_log: str = ""
        self._lines_at_last = 0
        """Lines shipped with the timestamp `_last_log`: a reopened stream repeats them first."""
        self._to_skip = 0
        self.known_after: int | None = None
        """How many lists had started when the pod was known to exist; a later list that misses it means lost."""

    async def wait(self) -> Exit:
        return await asyncio.shield(self._exit)

    async def kill(self, reason: str) -> None:
        if self._exit.done():
            return
        if self._stop is None:
            self._stop = (ExitKind.KILLED, reason or "killed on request")
        await self._backend._delete(self.name)
        # The watch reports the deletion; should the watch be down, the deleted pod is as good as gone.
        try:
            await asyncio.wait_for(self.wait(), self._backend.kill_grace_seconds + 5)
        except TimeoutError:
            self._end(Exit(ExitKind.KILLED, detail=self._stop[1]))

    # -- driven by the backend's watch ------------------------------------------------------------------------------

    def observe(self, pod: dict[str, Any]) -> None:
        if self._exit.done() or self._ending is not None:
            return
        if self._logs is None and pods.has_started(pod):
            self._logs = asyncio.create_task(self._follow_logs(), name=f"logs {self.name}")
        ended = pods.classify(pod)
        if ended is not None:
            self._end(ended, delete=ended.kind in (ExitKind.UNSTARTABLE, ExitKind.LOST, ExitKind.TIMEOUT))

    def gone(self) -> None:
        """The pod no longer exists."""
        self._end(Exit(ExitKind.LOST, detail="the pod was deleted by someone else"))

    def _end(self, exit: Exit, delete: bool = False) -> None:
        if self._exit.done() or self._ending is not None:
            return
        if self._stop is not None:
            exit = Exit(self._stop[0], exit.code, self._stop[1])
        self._ending = asyncio.create_task(self._finish(exit, delete), name=f"end {self.name}")

    async def _finish(self, exit: Exit, delete: bool) -> None:
        try:
            if delete:
                # A pod stuck in image pull back-off or evicted stays around otherwise; the attempt is over.
                await self._backend._delete(self.name)
            if self._logs is None and exit.kind in (ExitKind.EXITED, ExitKind.OOM):
                self._logs = asyncio.create_task(self._follow_logs())
            if self._logs is not None and exit.kind in (ExitKind.EXITED, ExitKind.OOM, ExitKind.TIMEOUT):
                # The container ended by itself: its log ends too, and is read to the end before the exit is told.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._logs), _LOG_DRAIN_SECONDS)
            if self._logs is not None:
                self._logs.cancel()
        finally:
            if not self._exit.done():
                self._exit.set_result(exit)
            self._backend._finished(self)

    async def _follow_logs(self) -> None:
        """Ship the container's output; reopen a dropped stream from the last line seen, until the pod ends."""
        while True:
            since = _since_seconds(self._last_log)
            self._to_skip = self._lines_at_last
            try:
                response = await self._backend.stream(
                    self._backend.core.read_namespaced_pod_log,
                    self.name,
                    self._backend.namespace,
                    container=pods.CONTAINER,
                    follow=True,
                    timestamps=True,
                    since_seconds=since,
                )
                try:
                    async for raw in response.content:
                        self._ship(raw)
                finally:
                    response.close()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("the log of %s broke off (%s)", self.name, error)
            if self._exit.done() or self._ending is not None:
                return
            await asyncio.sleep(1.0)

    def _ship(self, raw: bytes) -> None:
        stamp, _, line = raw.partition(b" ")
        at = _sortable_stamp(stamp.decode(errors="replace"))
        if at is None:  # not a timestamped line: ship it whole
            line = raw
        elif at < self._last_log:
            return  # shipped before the stream was reopened
        elif at == self._last_log and self._to_skip > 0:
            self._to_skip -= 1  # the same: several lines can share a timestamp
            return
        elif at == self._last_log:
            self._lines_at_last += 1
        else:
            self._last_log, self._lines_at_last, self._to_skip = at, 1, 0
        try:
            self._on_output("stdout", line)
        except Exception:
            log.exception("the output sink of %s failed", self.key)


def _sortable_stamp(stamp: str) -> str | None:
    """RFC 3339 with nanoseconds, fraction padded to 9 digits so that strings sort as times; None if not one."""
    if len(stamp) < 20 or stamp[10:11] != "T" or not stamp.endswith("Z"):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}Z"


def _since_seconds(last: str) -> int | None:
    if not last:
        return None
    at = datetime.fromisoformat(last[:19]).replace(tzinfo=UTC)
    return max(1, math.ceil((datetime.now(UTC) - at).total_seconds()) + 1)


class KubernetesBackend:
    """Runs attempts as pods in one namespace of one cluster; `start` connects, `close` deletes what still runs."""

    name = "kubernetes"
    runs_on_this_host = False

    def __init__(
        self,
        *,
        owner: str,
        namespace: str | None = None,
        kubeconfig: Path | None = None,
        default_image: str = DEFAULT_IMAGE,
        gc_after_seconds: float = 300.0,
        capacity_interval: float = 10.0,
        watch_timeout_seconds: int = 300,
        kill_grace_seconds: int = 30,
        gpu_type_label: str = pods.DEFAULT_GPU_TYPE_LABEL,
    ) -> None:
        self.owner = owner
        self.namespace = namespace or _default_namespace(kubeconfig)
        self.kubeconfig = kubeconfig
        self.default_image = default_image
        self.gc_after_seconds = gc_after_seconds
        self.capacity_interval = capacity_interval
        self.watch_timeout_seconds = watch_timeout_seconds
        self.kill_grace_seconds = kill_grace_seconds
        self.gpu_type_label = gpu_type_label
        self._api: k8s.ApiClient | None = None
        self._core: k8s.CoreV1Api | None = None
        self._handles: dict[str, KubernetesHandle] = {}
        self._lists_started = 0
        self._capacity: Capacity | None = None
        self._tasks = Background()
        self._collecting: set[str] = set()
        self._closed = False

    @property
    def core(self) -> k8s.CoreV1Api:
        if self._core is None:
            raise RuntimeError("the kubernetes backend is not started")
        return self._core

    @property
    def selector(self) -> str:
        return f"{pods.MANAGED_BY}={pods.MANAGER},{pods.OWNER}={pods.label_value(self.owner)}"

    async def start(self) -> None:
        """Connect (the kubeconfig, else the pod's service account), take stock of pods and capacity, start
        watching. Raises ConnectionError when the cluster cannot be reached at all: an agent that cannot create
        pods must not offer itself to the gateway."""
        configuration = k8s.Configuration()
        try:
            if self.kubeconfig is not None:
                await k8s_config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as error:
            raise ConnectionError(f"no Kubernetes configuration: {error}") from None
        self._api = k8s.ApiClient(configuration=configuration)
        self._core = k8s.CoreV1Api(self._api)
        try:
            await self._relist()
        except (ApiException, aiohttp.ClientError, OSError) as error:
            await self._api.close()
            raise ConnectionError(f"cannot list pods in namespace {self.namespace!r}: {error}") from None
        await self._refresh_capacity()
        self._tasks.spawn(self._watch_forever())
        self._tasks.spawn(self._capacity_forever())

    def capacity(self) -> Capacity | None:
        return self._capacity

    def running(self) -> list[str]:
        return list(self._handles)

    async def launch(self, spec: LaunchSpec, on_output: OutputSink) -> KubernetesHandle:
        if self._closed:
            raise RuntimeError("the kubernetes backend is closed")
        handle = KubernetesHandle(spec, self, on_output)
        if handle.name in self._handles:
            raise ValueError(f"attempt {spec.key!r} is already running")
        # Registered before the first await, so a concurrent duplicate is refused and early events find it.
        self._handles[handle.name] = handle
        try:
            secret = pods.secret_manifest(spec, namespace=self.namespace, owner=self.owner)
            await _created(self.json(self.core.create_namespaced_secret, self.namespace, cast(Any, secret)))
            pod = pods.pod_manifest(
                spec,
                namespace=self.namespace,
                owner=self.owner,
                default_image=self.default_image,
                kill_grace_seconds=self.kill_grace_seconds,
                gpu_type_label=self.gpu_type_label,
            )
            created = await _created(self.json(self.core.create_namespaced_pod, self.namespace, cast(Any, pod)))
        except BaseException:
            self._handles.pop(handle.name, None)
            with contextlib.suppress(Exception):
                await self._delete(handle.name)
            raise
        handle.known_after = self._lists_started
        uid = ((created or {}).get("metadata") or {}).get("uid")
        if uid:
            self._tasks.spawn(self._tie_secret(handle.name, uid))
        return handle

    async def _tie_secret(self, name: str, uid: str) -> None:
        """Make the pod own its Secret, so Kubernetes deletes the Secret with the pod even if this agent is gone."""
        owner = {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]}}
        with contextlib.suppress(ApiException):
            await self.core.patch_namespaced_secret(name, self.namespace, owner)

    async def _delete(self, name: str) -> None:
        """Delete an attempt's pod and Secret; a missing one is already deleted."""
        for delete in (self.core.delete_namespaced_pod, self.core.delete_namespaced_secret):
            try:
                await delete(name, self.namespace, grace_period_seconds=self.kill_grace_seconds)
            except ApiException as error:
                if error.status != 404:
                    raise

    def _finished(self, handle: KubernetesHandle) -> None:
        if self._handles.get(handle.name) is handle:
            del self._handles[handle.name]
        self._collect_later(handle.name)

    def _collect_later(self, name: str) -> None:
        if name in self._collecting or self._closed:
            return
        self._collecting.add(name)
        self._tasks.spawn(self._collect(name))

    async def _collect(self, name: str) -> None:
        try:
            await asyncio.sleep(self.gc_after_seconds)
            if name not in self._handles:  # not launched again meanwhile
                await self._delete(name)
        except ApiException as error:
            log.warning("could not delete the finished pod %s: %s", name, error.reason)
        finally:
            self._collecting.discard(name)

    # -- the watch ------------------------------------------------------------------------------------------------

    async def _watch_forever(self) -> None:
        retry = RetryDelay(0.1, 5.0)
        while not self._closed:
            try:
                version = await self._relist()
                retry.reset()
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = retry.next()
                log.warning("the pod watch broke off (%s); listing again in %.2fs", error, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> str | None:
        self._lists_started += 1
        started = self._lists_started
        listed = await self.json(self.core.list_namespaced_pod, self.namespace, label_selector=self.selector)
        seen = set()
        for pod in listed.get("items") or []:
            if pods.owned_by(pod, self.owner):
                seen.add(pod["metadata"]["name"])
                self._observe(pod)
        for name, handle in list(self._handles.items()):
            if name not in seen and handle.known_after is not None and handle.known_after < started:
                handle.gone()
        version: str | None = (listed.get("metadata") or {}).get("resourceVersion")
        return version

    async def _watch(self, version: str | None) -> None:
        # `watch` is passed as the string "true": kubernetes-asyncio would send Python's `True`.
        response = await self.stream(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            watch="true",
            resource_version=version,
            timeout_seconds=self.watch_timeout_seconds,
            allow_watch_bookmarks=True,
        )
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone: the resourceVersion is too old; anything else: start over from a list too.
                    raise RuntimeError(f"the watch answered {pod.get('code')}: {pod.get('message')}")
                if kind == "BOOKMARK" or not pods.owned_by(pod, self.owner):
                    continue
                if kind == "DELETED":
                    handle = self._handles.get(pod["metadata"]["name"])
                    if handle is not None:
                        handle.gone()
                else:
                    self._observe(pod)
        finally:
            response.close()

    @staticmethod
    async def stream(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        """The raw response of a call whose body is a stream (a watch, a followed log): read it line by line."""
        response: aiohttp.ClientResponse = await call(*args, _preload_content=False, **kwargs)
        if not 200 <= response.status <= 299:
            # Unread, the client does not check the status: raise as it would.
            body = await response.text()
            response.close()
            raise ApiException(status=response.status, reason=f"{response.reason}: {body[:500]}")
        return response

    def _observe(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        handle = self._handles.get(name)
        if handle is not None:
            handle.observe(pod)
        elif pods.classify(pod) is not None:
            self._collect_later(name)  # finished and nobody's: a previous agent's, or collected already

    @classmethod
    async def json(cls, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The API's JSON answer as it is: the client's models reject objects they find incomplete, and reading
        plain dicts costs less than building models."""
        response = await cls.stream(call, *args, **kwargs)
        try:
            answer: dict[str, Any] = await response.json()
            return answer
        finally:
            response.close()

    # -- capacity -------------------------------------------------------------------------------------------------

    async def _capacity_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.capacity_interval)
            await self._refresh_capacity()

    async def _refresh_capacity(self) -> None:
        try:
            nodes = await self.json(self.core.list_node)
            running = await self.json(
                self.core.list_pod_for_all_namespaces, field_selector="status.phase!=Succeeded,status.phase!=Failed"
            )
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("cannot read the cluster's capacity: %s", error)
            return
        allocatable: dict[str, float] = {}
        for node in nodes.get("items") or []:
            for resource, amount in pods.node_allocatable(node, self.gpu_type_label).items():
                allocatable[resource] = allocatable.get(resource, 0.0) + amount
        free = dict(allocatable)
        for pod in running.get("items") or []:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            free["pods"] = free.get("pods", 0.0) - 1
            for resource, amount in pods.requests_of(pod).items():
                free[resource] = free.get(resource, 0.0) - amount
        self._capacity = Capacity(allocatable=allocatable, free=free)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        handles = list(self._handles.values())
        with contextlib.suppress(Exception):
            await asyncio.gather(*(h.kill("the agent's kubernetes backend is closing") for h in handles))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()


async def _created(call: Awaitable[Any]) -> Any:
    """Create, treating "already exists" as done: the name is the attempt's, so it is this attempt's object."""
    try:
        return await call
    except ApiException as error:
        if error.status == 409:
            return None
        raise


def _default_namespace(kubeconfig: Path | None) -> str:
    if kubeconfig is None and _SERVICE_ACCOUNT_NAMESPACE.exists():
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "flyte"
