"""Reusable pools on Kubernetes: the warm workers of an (environment, version) are the pods of one Deployment,
which dial back to the agent over TCP and speak the pool protocol of `agent/_pools.py`.

`KubePools` is `Pools` with three things changed:

- The socket is a TCP port on `pool_host` (the agent's pod IP): a pod cannot reach the agent's Unix socket. The
  pool's secret, in a Secret the pods read through `secretKeyRef`, authenticates their hello; a pod's name
  (downward API) is its worker name.
- A worker is a replica. Growing the pool sets the Deployment's `replicas` to the replicas the pool counts;
  replacing a crashed pod is the Deployment's job (its new pod takes the dead one's place when it connects).
  Retiring an idle worker gives its pod the lowest `controller.kubernetes.io/pod-deletion-cost` and scales down by
  one, so the ReplicaSet removes that pod and not a busy one.
- Idleness: a worker idle for `scaledown_ttl` (else `idle_ttl`) is retired while the pool is above
  `min_replicas`; a pool with nothing in flight for `idle_ttl` is removed, its Deployment and Secret deleted (the
  next assignment makes it again). The agent deletes its pools' Deployments when it stops.

A pod that dies drops its connection: its in-flight attempts end LOST (retried by the gateway), as a dead local
worker's do. Pool pods carry no `managed-by` label, so the backend's pod watch (attempts only) ignores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from agent._host import AttemptHost
from agent._pools import Pool, Pools, Worker
from flyte._runtime._pool import POOL_SECRET_ENV, POOL_WORKER_ENV
from flyte._wire import PoolHello

from . import _kube_pods as pods
from ._kubernetes import KubernetesBackend
from ._protocol import Exit, ExitKind, LaunchSpec

log = logging.getLogger("flyte.agent.kubernetes.pools")

POD_IP_ENV = "FLYTE_POD_IP"
POOL = "flyte.org/pool"
"""Label: the pool (its Deployment's name) a pod belongs to."""
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_RETIRING_COST = "-1000"
"""Below every other pod's cost (0 by default): the ReplicaSet removes this one first when scaled down."""


def deployment_manifest(
    spec: LaunchSpec,
    *,
    namespace: str,
    owner: str,
    replicas: int,
    default_image: str,
    kill_grace_seconds: int = 30,
    gpu_type_label: str = pods.DEFAULT_GPU_TYPE_LABEL,
) -> dict[str, Any]:
    """The Deployment of a pool's workers: their pod is an attempt's pod (`_kube_pods.pod_manifest`: image,
    resources per replica, GPUs, the Secret's environment), restarted when it ends, named by the downward API."""
    pod = pods.pod_manifest(
        spec,
        namespace=namespace,
        owner=owner,
        default_image=default_image,
        kill_grace_seconds=kill_grace_seconds,
        gpu_type_label=gpu_type_label,
    )
    name = pod["metadata"]["name"]
    selector = {pods.OWNER: pods.label_value(owner), POOL: name}
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k != pods.MANAGED_BY}
    template_spec = pod["spec"]
    template_spec["restartPolicy"] = "Always"  # a Deployment's only choice: a worker that exits comes back
    template_spec["containers"][0]["env"].append(
        {"name": POOL_WORKER_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {pods.MANAGED_BY: pods.MANAGER, **selector},
            "annotations": {pods.KEY: spec.key},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**labels, **selector}, "annotations": dict(pod["metadata"]["annotations"])},
                "spec": template_spec,
            },
        },
    }


class Replica:
    """A replica of a pool's Deployment as `Pools` sees a worker's handle: it ends when its pod's connection does."""

    key = "replica"

    def __init__(self, retire: Callable[[Replica], Awaitable[None]]) -> None:
        self.pod = ""
        """The pod that took this replica's place: named in its hello."""
        self.leaving = False
        self._retire = retire
        self._ended: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()

    @property
    def ended(self) -> bool:
        return self._ended.done()

    def end(self, exit: Exit) -> None:
        if not self._ended.done():
            self._ended.set_result(exit)

    async def wait(self) -> Exit:
        return await asyncio.shield(self._ended)

    async def kill(self, reason: str) -> None:
        if not self.leaving and not self.ended:
            await self._retire(self)
        self.end(Exit(ExitKind.KILLED, detail=reason))


@dataclass
class _Deployment:
    name: str
    address: str
    """What the pods dial: tcp://HOST:PORT."""
    members: list[Worker] = field(default_factory=list)
    """The pool's replicas, connected or not, until they end."""
    replicas: int | None = None
    """As last written to the API; None until the Deployment is made."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active_at: float = field(default_factory=time.monotonic)
    """When the pool last had work in flight or workers starting."""

    def wanted(self) -> int:
        self.members = [w for w in self.members if not _replica(w).ended]
        return sum(not _replica(w).leaving for w in self.members)


def _replica(worker: Worker) -> Replica:
    assert isinstance(worker.handle, Replica)
    return worker.handle


class KubePools(Pools):
    """The agent's pools when its backend is Kubernetes: one Deployment per (environment, version)."""

    def __init__(self, agent: AttemptHost, directory: Path) -> None:
        super().__init__(agent, directory)
        if not isinstance(agent.backend, KubernetesBackend):
            raise TypeError("pools of pods need the kubernetes backend")
        self.backend = agent.backend
        self.pool_host = os.environ.get(POD_IP_ENV) or socket.gethostbyname(socket.gethostname())
        """Where the agent listens for its pools' pods: its pod's IP (the downward API sets the variable)."""
        self._deployments: dict[str, _Deployment] = {}
        self._served: set[str] = set()
        """Pods that have connected: one restarting after it served died at work, not at start."""

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(cast(Any, self.backend.core).api_client)

    # -- the socket, and who may use it -------------------------------------------------------------------------

    async def _listen(self, pool: Pool) -> None:
        pool.server = await asyncio.start_server(lambda r, w: self._accept(pool, r, w), host=self.pool_host, port=0)
        port = pool.server.sockets[0].getsockname()[1]
        host = f"[{self.pool_host}]" if ":" in self.pool_host else self.pool_host
        name = pods.pod_name(self._key(pool))
        self._deployments[pool.key] = _Deployment(name=name, address=f"tcp://{host}:{port}")

    def _key(self, pool: Pool) -> str:
        """`<cluster>/<project>/<domain>/<env>@<version>`: agents of several clusters may share a namespace, each with
        its own pools."""
        return f"{self.backend.owner}/{pool.key}"

    def _claim(self, pool: Pool, hello: PoolHello) -> Worker | None:
        name = hello.worker or ""
        worker = next((w for w in pool.pending if isinstance(w.handle, Replica) and not w.ident), None)
        if not name or worker is None:
            # More pods than replicas (a rollout's surge, a replacement that raced a scale-down): this one waits
            # for its container to restart.
            return None
        pool.pending.remove(worker)
        worker.ident = _replica(worker).pod = name
        self._served.add(name)
        return worker

    async def _accept(self, pool: Pool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deployment = self._deployments.get(pool.key)
        try:
            await super()._accept(pool, reader, writer)
        except (ConnectionError, OSError) as error:
            log.info("a worker of pool %s dropped its connection: %s", pool.key, error)
        finally:
            writer.close()
            members = deployment.members if deployment is not None else []
            for worker in members:
                if worker.writer is writer:
                    replica = _replica(worker)
                    kind = ExitKind.KILLED if replica.leaving else ExitKind.LOST
                    replica.end(Exit(kind, detail=f"its pod {replica.pod} went away"))

    # -- starting and stopping workers: the Deployment's replicas ------------------------------------------------

    async def _start_worker(self, pool: Pool) -> Worker:
        deployment = self._deployments[pool.key]
        worker = Worker(Replica(lambda replica: self._retire(pool, replica)))
        pool.pending.append(worker)
        deployment.members.append(worker)
        self._tasks.spawn(self._watch_worker(pool, worker))
        try:
            await self._scale(pool, deployment)
        except Exception:
            _replica(worker).end(Exit(ExitKind.LOST, detail="the pool's Deployment could not be scaled"))
            if deployment.replicas is None:
                # Never made: forget the pool, so that the attempt's retry tries again from the start.
                self._forget(pool)
            raise
        return worker

    async def _watch_worker(self, pool: Pool, worker: Worker) -> None:
        await super()._watch_worker(pool, worker)
        deployment = self._deployments.get(pool.key)
        if deployment is not None and not self._closing:
            # A replica that died above the floor is not replaced: the Deployment shrinks by one.
            try:
                await self._scale(pool, deployment)
            except ApiException as error:
                log.warning("could not scale pool %s: %s", pool.key, error.reason)

    def _start_failed(self, pool: Pool, worker: Worker, exit: Exit) -> None:
        """A replica that never connected ended because the pool was scaled down or removed: restarting a crashing
        pod is the Deployment's (with the kubelet's back-off), and `_check_pods` judges a pool whose pods cannot
        start."""

    async def _scale(self, pool: Pool, deployment: _Deployment) -> None:
        async with deployment.lock:
            wanted = deployment.wanted()
            if deployment.replicas is None:
                await self._deploy(pool, deployment, wanted)
            elif wanted != deployment.replicas:
                patch = {"spec": {"replicas": wanted}}
                await self.backend.json(
                    self.apps.patch_namespaced_deployment, deployment.name, self.backend.namespace, patch
                )
            deployment.replicas = wanted

    async def _deploy(self, pool: Pool, deployment: _Deployment, replicas: int) -> None:
        """Make the pool's Secret and Deployment. One left by a previous agent process (same name) is updated to
        this one's address and secret: its pods roll over to this agent."""
        task = await self.agent.task_spec(pool.template)
        spec = LaunchSpec(
            key=self._key(pool),
            command=[
                "python",
                "-m",
                "flyte._runtime",
                "--pool",
                deployment.address,
                "--concurrency",
                str(pool.concurrency),
            ],
            env={
                **task.env_vars,
                "FLYTE_ENDPOINT": self.agent.worker_endpoints(),
                "FLYTE_CLUSTER": self.agent.cluster.name,
                "PYTHONUNBUFFERED": "1",
            },
            cwd=Path("/"),
            secret_env={**pool.prepared.secret_env, POOL_SECRET_ENV: pool.secret},
            secret_files=pool.prepared.secret_files,
            image=task.image,
            resources=pool.template.resources,
        )
        namespace, owner = self.backend.namespace, self.backend.owner
        secret = pods.secret_manifest(spec, namespace=namespace, owner=owner)
        await self._apply(self.backend.core.create_namespaced_secret, self.backend.core.patch_namespaced_secret, secret)
        manifest = deployment_manifest(
            spec,
            namespace=namespace,
            owner=owner,
            replicas=replicas,
            default_image=self.backend.default_image,
            kill_grace_seconds=self.backend.kill_grace_seconds,
            gpu_type_label=self.backend.gpu_type_label,
        )
        made = await self._apply(
            self.apps.create_namespaced_deployment, self.apps.patch_namespaced_deployment, manifest
        )
        uid = (made.get("metadata") or {}).get("uid")
        if uid:
            # Owned by the Deployment: deleted with it, even when this agent is gone.
            reference = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment.name, "uid": uid}
            with contextlib.suppress(ApiException):
                await self.backend.core.patch_namespaced_secret(
                    deployment.name, namespace, {"metadata": {"ownerReferences": [reference]}}
                )

    async def _apply(
        self, create: Callable[..., Awaitable[Any]], patch: Callable[..., Awaitable[Any]], body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create, or patch what exists under the name."""
        try:
            return await self.backend.json(create, self.backend.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
        return await self.backend.json(patch, body["metadata"]["name"], self.backend.namespace, body)

    async def _retire(self, pool: Pool, replica: Replica) -> None:
        """Scale down by this replica: its pod is marked to go first, and gets no more work meanwhile."""
        deployment = self._deployments.get(pool.key)
        replica.leaving = True
        pool.workers[:] = [w for w in pool.workers if w.handle is not replica]
        if deployment is None:
            return
        if replica.pod:
            annotation = {"metadata": {"annotations": {DELETION_COST: _RETIRING_COST}}}
            try:
                await self.backend.core.patch_namespaced_pod(replica.pod, self.backend.namespace, annotation)
            except ApiException as error:
                log.info("could not mark pod %s to go first: %s", replica.pod, error.reason)
        await self._scale(pool, deployment)

    # -- idleness and the end ---------------------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for pool in list(self.pools.values()):
                try:
                    await self._reap(pool)
                except Exception as error:  # the API unreachable a while: the next round tries again
                    log.warning("could not check pool %s: %s", pool.key, error)

    async def _reap(self, pool: Pool) -> None:
        deployment = self._deployments.get(pool.key)
        if deployment is None:
            return
        now = time.monotonic()
        if not pool.workers and any(isinstance(w.handle, Replica) for w in pool.pending):
            await self._check_pods(pool, deployment)
        if pool.pending or any(w.inflight for w in pool.workers):
            deployment.active_at = now
            return
        scaledown = (pool.template.reusable and pool.template.reusable.scaledown_ttl) or pool.idle_ttl
        above_floor = deployment.wanted() - pool.min_replicas
        if scaledown is not None and above_floor > 0:
            idle = [w for w in pool.workers if now - w.idle_since > float(scaledown)]
            for worker in sorted(idle, key=lambda w: w.idle_since)[:above_floor]:
                await self._retire(pool, _replica(worker))
            return
        # Down to its floor first, then the whole pool: removed once idle for idle_ttl.
        idle_for = now - max([deployment.active_at, *(w.idle_since for w in pool.workers)])
        if pool.idle_ttl is not None and idle_for > pool.idle_ttl:
            log.info("pool %s idle for %.0fs: removing its Deployment", pool.key, idle_for)
            await self._remove(pool)

    async def _check_pods(self, pool: Pool, deployment: _Deployment) -> None:
        """While none of the pool's workers has connected: a pod that cannot start (its image cannot be pulled,
        its configuration is wrong) fails the waiting assignments as an attempt's pod would, and the pool goes; a
        pod whose container keeps ending before it connects (CrashLoopBackOff) fails them as the user's error, with
        its output, while the kubelet backs off and tries again."""
        selector = f"{POOL}={deployment.name}"
        listed = await self.backend.json(
            self.backend.core.list_namespaced_pod, self.backend.namespace, label_selector=selector
        )
        for pod in listed.get("items") or []:
            if ((pod.get("metadata") or {}).get("labels") or {}).get(POOL) != deployment.name:
                continue
            name = (pod.get("metadata") or {}).get("name")
            crashing = pods.crash_looping(pod) if name not in self._served else None
            if crashing is not None:
                # The kubelet backs off between restarts; the attempts waiting meanwhile end with how it ended.
                pool.start_failed = replace(
                    crashing, detail=f"the reusable environment's pod {name} cannot take work: {crashing.detail}"
                )
                pool.failures_seen += 1
                log.warning("pool %s: %s", pool.key, pool.start_failed.detail)
                async with pool.changed:
                    pool.changed.notify_all()
                return
            ended = pods.classify(pod)
            if ended is not None and ended.kind is ExitKind.UNSTARTABLE:
                log.warning("pool %s cannot start: %s", pool.key, ended.detail)
                pool.failed = ended
                await self._remove(pool)
                async with pool.changed:
                    pool.changed.notify_all()
                return

    def _forget(self, pool: Pool) -> _Deployment | None:
        if self.pools.get(pool.key) is pool:
            del self.pools[pool.key]
        # A removed pool has no floor: its workers' ends start no others.
        pool.min_replicas = 0
        if pool.server is not None:
            pool.server.close()
        deployment = self._deployments.pop(pool.key, None)
        if deployment is not None:
            self._served = {pod for pod in self._served if not pod.startswith(f"{deployment.name}-")}
        return deployment

    async def _remove(self, pool: Pool) -> None:
        deployment = self._forget(pool)
        if deployment is None:
            return
        for worker in deployment.members:
            _replica(worker).leaving = True
        namespace = self.backend.namespace
        for delete in (self.apps.delete_namespaced_deployment, self.backend.core.delete_namespaced_secret):
            try:
                # Background: the pods go after the Deployment, by the garbage collector.
                await delete(deployment.name, namespace, propagation_policy="Background")
            except ApiException as error:
                if error.status != 404:
                    raise
        for worker in deployment.members:
            _replica(worker).end(Exit(ExitKind.KILLED, detail="its pool was removed"))
            if worker.writer is not None:
                worker.writer.close()  # its connection ends now, not cancelled when the agent's loop stops

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in list(self.pools.values()):
            try:
                await self._remove(pool)
            except ApiException as error:
                log.warning("could not delete the Deployment of pool %s: %s", pool.key, error.reason)
