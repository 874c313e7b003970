"""A Kubernetes API for tests: kmock's emulator on 127.0.0.1, a kubeconfig that points at it, and a kubelet
stand-in (kmock fills in no pod status, so tests drive phases themselves, through the API as a kubelet would).

`FakeCluster` stores objects and serves list, watch, create, patch and delete; pod logs are served from what the
test (or `Kubelet`) wrote for a pod. `Kubelet` watches the namespace's pods and runs each pod's container as a
local process with the pod's environment (its `secretKeyRef`s resolved from the stored Secrets), reporting
Running and then how it exited, so an agent's pods really run their workers; a deleted pod's process is killed.
`Deployments` stands in for the Deployment and ReplicaSet controllers: it keeps each Deployment's pods at its
`replicas`, removing the pods of lowest `controller.kubernetes.io/pod-deletion-cost` first, and replaces the pods
of an older template when the template changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kmock import KubernetesEmulator, Request, Server, resource

PODS = resource("", "v1", "pods")
SECRETS = resource("", "v1", "secrets")
DEPLOYMENTS = resource("apps", "v1", "deployments")
TEMPLATE_HASH = "pod-template-hash"
NODES = resource("", "v1", "nodes")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _container(state: dict[str, Any], ready: bool = False) -> list[dict[str, Any]]:
    # The fields a kubelet always fills in (the API's models require them).
    return [{"name": "task", "image": "", "imageID": "", "ready": ready, "restartCount": 0, "state": state}]


def running() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": _container({"running": {"startedAt": _stamp()}}, ready=True)}


def terminated(code: int, reason: str = "", message: str = "") -> dict[str, Any]:
    ended: dict[str, Any] = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error")}
    if message:
        ended["message"] = message
    return {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": _container({"terminated": ended})}


def crash_loop(code: int, output: bytes, restarts: int) -> dict[str, Any]:
    """A restarting container between two runs: waiting in back-off, how it last ended (its termination message
    the end of its log, as `FallbackToLogsOnError` gives it)."""
    status = _container({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}})
    message = output.decode(errors="replace")[-4096:]
    status[0]["lastState"] = {"terminated": {"exitCode": code, "reason": "Error", "message": message}}
    status[0]["restartCount"] = restarts
    return {"phase": "Running", "containerStatuses": status}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"phase": "Pending", "containerStatuses": _container({"waiting": {"reason": reason, "message": message}})}


class FakeCluster:
    def __init__(self, directory: Path) -> None:
        self.emulator = KubernetesEmulator()
        self.directory = directory
        self.kubeconfig = directory / "kubeconfig"
        self.port = 0
        self._server: Server | None = None
        self._logs: dict[str, asyncio.Future[bytes]] = {}

    @property
    def server(self) -> Server:
        assert self._server is not None, "the API server is stopped"
        return self._server

    async def start(self) -> None:
        """Start serving (again, on the same port after `stop`: clients see a restarted API server)."""
        self._server = Server(self.emulator, port=self.port or None)
        await self._server.__aenter__()
        self.port = self._server.port
        self.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(f"http://127.0.0.1:{self.port}")))

    async def stop(self) -> None:
        """Stop serving: open watches and log streams break off, as when an API server restarts."""
        if self._server is not None:
            server, self._server = self._server, None
            runner = server.server.runner
            assert runner is not None
            assert runner.server is not None
            # Cut open streams now: a graceful shutdown would wait a minute for watches that never end by themselves.
            for connection in runner.server.connections:
                connection.force_close()
            await server.__aexit__(None, None, None)

    async def watched(self, plural: str = "pods", within: float = 10.0) -> None:
        """Until a watch of `plural` streams. kmock's emulator streams what happens after a watch subscribes, where
        a real API server replays from the list's resourceVersion: a pod created and deleted before the backend's
        watch subscribed would go unseen there until the next list, minutes later. A test that acts right after a
        backend starts waits for its watch first. (The emulator keeps its watchers in its per-resource buses.)"""
        buses: dict[Any, Any] = self.emulator._buses
        deadline = asyncio.get_running_loop().time() + within
        while not any(getattr(key, "plural", None) == plural and bus.consumer_count for key, bus in buses.items()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no watch of {plural} within {within}s")
            await asyncio.sleep(0.01)

    def add_node(self, name: str, allocatable: dict[str, str], labels: dict[str, str] | None = None) -> None:
        self.emulator.objects[NODES, None, name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
        }

    def pods(self, namespace: str = "flyte") -> dict[str, dict[str, Any]]:
        """The namespace's pods that exist (not deleted), by name."""
        found = {}
        for (res, ns, name), obj in list(self.emulator.objects.items()):
            if res == PODS and ns == namespace and not obj.deleted:
                found[name] = dict(obj.raw)
        return found

    def secret(self, name: str, namespace: str = "flyte") -> dict[str, Any] | None:
        key = (SECRETS, namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return dict(self.emulator.objects[key].raw)

    async def set_status(self, name: str, status: dict[str, Any], namespace: str = "flyte") -> None:
        """Patch a pod's status through the API (so watchers see it), as the kubelet does."""
        url = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
        async with self.server.client.patch(url, json={"status": status}) as response:
            assert response.status == 200, await response.text()

    async def delete_pod(self, name: str, namespace: str = "flyte") -> None:
        async with self.server.client.delete(f"/api/v1/namespaces/{namespace}/pods/{name}") as response:
            assert response.status == 200, await response.text()

    def write_log(self, name: str, output: bytes) -> None:
        """What the pod's container printed; a log request waits for it, as `follow` waits for the container."""
        future = self._log(name)
        if not future.done():
            # Stamped once, as the kubelet stamps each line when it is written.
            stamp = _stamp().encode()
            future.set_result(b"".join(stamp + b" " + line for line in output.splitlines(keepends=True)))

    def _log(self, name: str) -> asyncio.Future[bytes]:
        return self._logs.setdefault(name, asyncio.get_running_loop().create_future())

    async def _serve_log(self, request: Request) -> bytes:
        assert request.name is not None
        return await asyncio.wait_for(asyncio.shield(self._log(request.name)), 60)


@contextlib.asynccontextmanager
async def fake_cluster(directory: Path) -> AsyncIterator[FakeCluster]:
    cluster = FakeCluster(directory)
    async with cluster.emulator:
        cluster.emulator.resources[PODS] = {}
        cluster.emulator.resources[SECRETS] = {}
        cluster.emulator.resources[DEPLOYMENTS] = {}
        cluster.emulator[cluster.emulator.subresource("log")] << cluster._serve_log
        await cluster.start()
        try:
            yield cluster
        finally:
            await cluster.stop()


class Kubelet:
    """Runs the pods of a namespace as local processes, reporting their phases through the API."""

    def __init__(
        self,
        cluster: FakeCluster,
        home: Path,
        namespace: str = "flyte",
        unpullable: set[str] | None = None,
        memory_needed: int = 0,
    ) -> None:
        self.cluster = cluster
        self.unpullable = unpullable or set()
        """Images no registry has: their pods wait in ImagePullBackOff."""
        self.memory_needed = memory_needed
        """A container whose memory limit is below this is OOMKilled, as one that needs this much would be."""
        self.home = home
        self.namespace = namespace
        self.started: list[str] = []
        self.errors: list[BaseException | None] = []
        """What went wrong running a pod: a test asserts there is nothing."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = {}
        """Containers of `restartPolicy: Always` pods started again after they exited, by pod."""
        self._deleted: set[str] = set()

    async def __aenter__(self) -> Kubelet:
        self.home.mkdir(parents=True, exist_ok=True)
        self._watch = asyncio.create_task(self._watch_pods())
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in [self._watch, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_pods(self) -> None:
        url = f"/api/v1/namespaces/{self.namespace}/pods"
        async with self.cluster.server.client.get(url, params={"watch": "true"}) as response:
            async for line in response.content:
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED" and name not in self.started:
                    self.started.append(name)
                    task = asyncio.create_task(self._run(event["object"]))
                    task.add_done_callback(self._check)
                    self._tasks.add(task)
                elif event["type"] == "DELETED":
                    self._deleted.add(name)
                    process = self._processes.get(name)
                    if process is not None and process.returncode is None:
                        process.kill()

    def _check(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())

    async def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        if container["image"] in self.unpullable:
            await self.cluster.set_status(name, waiting("ErrImagePull", "not found"), self.namespace)
            await self.cluster.set_status(name, waiting("ImagePullBackOff", "Back-off pulling image"), self.namespace)
            return
        limit = container.get("resources", {}).get("limits", {}).get("memory")
        if limit is not None and int(limit) < self.memory_needed:
            self.cluster.write_log(name, b"")
            await self.cluster.set_status(name, running(), self.namespace)
            await self.cluster.set_status(name, terminated(137, reason="OOMKilled"), self.namespace)
            return
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "FLYTE_HOME": str(self.home / "flyte")}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "fieldRef" in item["valueFrom"]:
                assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", item
                env[item["name"]] = name
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                secret = self.cluster.secret(ref["name"], self.namespace)
                assert secret is not None, f"pod {name} refers to a missing Secret {ref['name']}"
                env[item["name"]] = secret["stringData"][ref["key"]]
        command = list(container["command"])
        if command[0] == "python":  # the image's interpreter is this one
            command[0] = sys.executable
        while True:
            process = self._processes[name] = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=self.home, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            try:
                await self.cluster.set_status(name, running(), self.namespace)
                assert process.stdout is not None
                output = await process.stdout.read()
                code = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: the test is over
                    process.kill()
                    await process.wait()
            self.cluster.write_log(name, output)
            if name in self._deleted:
                return
            if pod["spec"].get("restartPolicy") != "Always":
                await self.cluster.set_status(name, terminated(code), self.namespace)
                return
            # A Deployment's pod: its container is started again in the same pod, after a back-off as the kubelet's
            # CrashLoopBackOff (shorter: a test's worker restarts to reconnect).
            self.restarts[name] = self.restarts.get(name, 0) + 1
            await self.cluster.set_status(name, crash_loop(code, output, self.restarts[name]), self.namespace)
            await asyncio.sleep(min(0.25 * 2 ** self.restarts[name], 4.0))
            if name in self._deleted:
                return


class Deployments:
    """The Deployment and ReplicaSet controllers in one: each Deployment of the namespace has `replicas` pods made
    from its template (owned by it), the pods of lowest deletion cost removed first; a changed template replaces
    its pods (as the Recreate strategy does); a deleted Deployment's pods go."""

    def __init__(self, cluster: FakeCluster, namespace: str = "flyte") -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.made = 0
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Deployments:
        self._watch = asyncio.create_task(self._watch_deployments())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._watch is not None
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch

    def pods_of(self, deployment: str) -> dict[str, dict[str, Any]]:
        return {
            name: pod
            for name, pod in self.cluster.pods(self.namespace).items()
            if any(ref.get("name") == deployment for ref in pod["metadata"].get("ownerReferences", []))
        }

    async def _watch_deployments(self) -> None:
        url = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        async with self.cluster.server.client.get(url, params={"watch": "true"}) as response:
            async for line in response.content:
                event = json.loads(line)
                deployment = event["object"]
                wanted = 0 if event["type"] == "DELETED" else int(deployment["spec"].get("replicas", 1))
                await self._reconcile(deployment, wanted)

    async def _reconcile(self, deployment: dict[str, Any], wanted: int) -> None:
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        version = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        base = f"/api/v1/namespaces/{self.namespace}/pods"
        for stale, pod in self.pods_of(name).items():
            if pod["metadata"].get("labels", {}).get(TEMPLATE_HASH) != version:
                await self.cluster.delete_pod(stale, self.namespace)
        pods = self.pods_of(name)
        while len(pods) < wanted:
            self.made += 1
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **template["metadata"],
                    "labels": {**template["metadata"].get("labels", {}), TEMPLATE_HASH: version},
                    "name": f"{name}-{self.made}",
                    "namespace": self.namespace,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "u"}],
                },
                "spec": template["spec"],
            }
            async with self.cluster.server.client.post(base, json=pod) as response:
                assert response.status in (200, 201), await response.text()
            pods[pod["metadata"]["name"]] = pod

        def cost(item: tuple[str, dict[str, Any]]) -> int:
            annotations = item[1]["metadata"].get("annotations") or {}
            return int(annotations.get("controller.kubernetes.io/pod-deletion-cost", "0"))

        for victim, _ in sorted(pods.items(), key=cost)[: max(0, len(pods) - wanted)]:
            await self.cluster.delete_pod(victim, self.namespace)


def _kubeconfig(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
