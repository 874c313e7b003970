"""The Kubernetes backend against kmock (a Kubernetes API stand-in on 127.0.0.1): the pods it creates, how pod
states end attempts, a dropped watch, an abort, capacity; then an agent with this backend, connected to a real
gateway, runs an action whose pod a kubelet stand-in runs as a local process, and a reusable environment's pool
as a Deployment whose pods (made by a controller stand-in) dial back to the agent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kube_cluster import (
    DEPLOYMENTS,
    PODS,
    SECRETS,
    Deployments,
    FakeCluster,
    Kubelet,
    fake_cluster,
    running,
    terminated,
    waiting,
)
from processes import GatewayProcess
from waiting import async_assert_eventually

from agent.backends import Capacity, Exit, ExitKind, LaunchSpec
from agent.backends._kubernetes import DEFAULT_IMAGE, KubernetesBackend
from flyte._wire import ResourcesSpec

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[FakeCluster]:
    async with fake_cluster(tmp_path) as started:
        started.add_node("node-a", {"cpu": "4", "memory": "16Gi", "pods": "110"})
        started.add_node(
            "node-gpu",
            {"cpu": "8", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "2"},
            labels={"nvidia.com/gpu.product": "A100"},
        )
        yield started


@pytest.fixture
async def backend(cluster: FakeCluster) -> AsyncIterator[KubernetesBackend]:
    pods = KubernetesBackend(owner="k1", namespace="flyte", kubeconfig=cluster.kubeconfig, gc_after_seconds=0.0)
    await pods.start()
    await cluster.watched()
    try:
        yield pods
    finally:
        await pods.close()


class Output:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))

    def text(self) -> str:
        return b"".join(data for _, data in self.chunks).decode()


def spec(key: str, **fields: object) -> LaunchSpec:
    base: dict[str, object] = {
        "command": ["python", "-m", "flyte._runtime"],
        "env": {"FLYTE_ENDPOINT": "http://gateway:8080", "FLYTE_RUN": "r1", "FLYTE_ACTION": "a0"},
        "cwd": Path("/"),
        "secret_env": {"FLYTE_ASSIGNMENT": '{"token": "secret-token"}'},
    }
    if isinstance(resources := fields.get("resources"), dict):
        fields["resources"] = ResourcesSpec.model_validate(resources)
    return LaunchSpec(key=key, **{**base, **fields})  # type: ignore[arg-type]


async def test_pods_follow_each_environment(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    cpu_env = {"cpu": {"request": 0.5, "limit": 1.0}, "memory": {"request": 2**30, "limit": 2**31}}
    gpu_env = {"cpu": {"request": 4.0, "limit": 4.0}, "gpu": {"type": "A100", "count": 2}, "shm": 2**30, "disk": 10**10}
    await backend.launch(
        spec("r1/a0/1", image="repo/train:v3", resources=cpu_env, timeout_seconds=65.5, traceparent=TRACEPARENT),
        Output(),
    )
    await backend.launch(spec("r1/a1/1", resources=gpu_env, labels={"flyte.org/run": "r1"}), Output())
    await backend.launch(spec("r1/a2/1"), Output())
    pods = {p["metadata"]["annotations"]["flyte.org/key"]: p for p in cluster.pods().values()}
    assert set(pods) == {"r1/a0/1", "r1/a1/1", "r1/a2/1"}

    cpu_pod, gpu_pod, plain_pod = pods["r1/a0/1"], pods["r1/a1/1"], pods["r1/a2/1"]
    container = cpu_pod["spec"]["containers"][0]
    assert container["image"] == "repo/train:v3"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": str(2**30)},
        "limits": {"cpu": "1000m", "memory": str(2**31)},
    }
    assert cpu_pod["spec"]["activeDeadlineSeconds"] == 66
    assert cpu_pod["spec"]["restartPolicy"] == "Never"
    assert cpu_pod["spec"]["automountServiceAccountToken"] is False
    # Not root, and no way back to it (issue 15: tasks cannot reach the platform's credentials).
    assert cpu_pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert cpu_pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["FLYTE_ENDPOINT"]["value"] == "http://gateway:8080"
    assert env["FLYTE_ACTION"]["value"] == "a0"
    assert env["TRACEPARENT"]["value"] == TRACEPARENT
    # The token travels in a Secret named like the pod; the pod spec holds only a reference to it.
    name = cpu_pod["metadata"]["name"]
    assert env["FLYTE_ASSIGNMENT"]["valueFrom"] == {"secretKeyRef": {"name": name, "key": "FLYTE_ASSIGNMENT"}}
    assert "secret-token" not in json.dumps(cpu_pod)
    secret = cluster.secret(name)
    assert secret is not None
    assert secret["stringData"] == {"FLYTE_ASSIGNMENT": '{"token": "secret-token"}'}

    gpu_container = gpu_pod["spec"]["containers"][0]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert gpu_container["resources"]["requests"]["ephemeral-storage"] == str(10**10)
    assert gpu_pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["spec"]["tolerations"]
    assert gpu_pod["spec"]["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(2**30)}}]
    assert gpu_pod["metadata"]["labels"]["flyte.org/run"] == "r1"
    assert gpu_pod["metadata"]["labels"]["flyte.org/owner"] == "k1"

    plain = plain_pod["spec"]["containers"][0]
    assert plain["image"] == DEFAULT_IMAGE
    assert plain["resources"] == {}
    assert "activeDeadlineSeconds" not in plain_pod["spec"]
    assert "nodeSelector" not in plain_pod["spec"]


async def test_a_key_runs_once_and_a_restarted_agent_adopts_its_pod(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    first = await backend.launch(spec("r1/a0/1"), Output())
    with pytest.raises(ValueError, match="already running"):
        await backend.launch(spec("r1/a0/1"), Output())
    # Another backend (the agent restarted) launches the same attempt: the create answers 409, which is success.
    restarted = KubernetesBackend(owner="k1", namespace="flyte", kubeconfig=cluster.kubeconfig, gc_after_seconds=0.0)
    await restarted.start()
    try:
        adopted = await restarted.launch(spec("r1/a0/1"), Output())
        assert adopted.name == first.name
        assert len(cluster.pods()) == 1
        cluster.write_log(first.name, b"")
        await cluster.set_status(first.name, terminated(0))
        assert await asyncio.wait_for(adopted.wait(), 10) == Exit(ExitKind.EXITED, 0)
        assert await asyncio.wait_for(first.wait(), 10) == Exit(ExitKind.EXITED, 0)
    finally:
        await restarted.close()


async def test_a_pod_runs_ships_its_log_and_is_collected(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    output = Output()
    handle = await backend.launch(spec("r1/a0/1"), output)
    await cluster.set_status(handle.name, waiting("ContainerCreating"))
    await cluster.set_status(handle.name, running())
    cluster.write_log(handle.name, b"hello from the pod\nsecond line\n")
    await async_assert_eventually(lambda: "second line" in output.text())
    await cluster.set_status(handle.name, terminated(0))
    assert await asyncio.wait_for(handle.wait(), 10) == Exit(ExitKind.EXITED, 0)
    assert output.text() == "hello from the pod\nsecond line\n"
    assert {stream for stream, _ in output.chunks} == {"stdout"}
    # Finished pods are deleted after gc_after_seconds (0 here), their Secret with them.
    await async_assert_eventually(lambda: handle.name not in cluster.pods() and cluster.secret(handle.name) is None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (terminated(3, message="Traceback: boom"), Exit(ExitKind.EXITED, 3, "Traceback: boom")),
        (terminated(137, reason="OOMKilled"), Exit(ExitKind.OOM, 137, "the container was OOMKilled")),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
            Exit(ExitKind.LOST, None, "the pod was Evicted: The node was low on resource: memory."),
        ),
        (
            {
                "phase": "Failed",
                "conditions": [
                    {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager", "message": "x"}
                ],
            },
            Exit(ExitKind.LOST, None, "the pod was DeletionByTaintManager: x"),
        ),
        ({"phase": "Failed", "reason": "DeadlineExceeded", "message": "late"}, Exit(ExitKind.TIMEOUT, None, "late")),
        ({"phase": "Unknown"}, Exit(ExitKind.LOST, None, "its node stopped answering")),
    ],
    ids=["exit-code", "oom-killed", "evicted", "node-lost", "deadline", "unknown"],
)
async def test_how_a_pod_ends_its_attempt(
    backend: KubernetesBackend, cluster: FakeCluster, status: dict[str, object], expected: Exit
) -> None:
    handle = await backend.launch(spec("r1/a0/1"), Output())
    await cluster.set_status(handle.name, running())
    cluster.write_log(handle.name, b"")
    await cluster.set_status(handle.name, status)
    assert await asyncio.wait_for(handle.wait(), 10) == expected


async def test_an_oom_names_the_limit(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    handle = await backend.launch(spec("r1/a0/1", resources={"memory": {"request": 64, "limit": 128}}), Output())
    cluster.write_log(handle.name, b"")
    await cluster.set_status(handle.name, terminated(137, reason="OOMKilled"))
    ended = await asyncio.wait_for(handle.wait(), 10)
    assert ended.kind is ExitKind.OOM
    assert "memory limit of 128 bytes" in ended.detail


async def test_an_image_that_cannot_be_pulled_fails_at_once(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    handle = await backend.launch(spec("r1/a0/1", image="nowhere/none:1"), Output())
    await cluster.set_status(handle.name, waiting("ErrImagePull", "not found"))  # the kubelet retries once
    await cluster.set_status(handle.name, waiting("ImagePullBackOff", "Back-off pulling image"))
    ended = await asyncio.wait_for(handle.wait(), 10)
    assert ended.kind is ExitKind.UNSTARTABLE
    assert "'nowhere/none:1' cannot be pulled (ImagePullBackOff)" in ended.detail
    assert handle.name not in cluster.pods(), "a pod stuck in back-off is deleted"


async def test_a_dropped_watch_resumes_and_sees_what_changed(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    done = await backend.launch(spec("r1/a0/1"), Output())
    vanished = await backend.launch(spec("r1/a1/1"), Output())
    await cluster.set_status(done.name, running())
    cluster.write_log(done.name, b"")
    await cluster.stop()
    # While the API server is down: one pod finishes, another disappears. No watch event reaches the backend.
    cluster.emulator.objects[PODS, "flyte", done.name].patch({"status": terminated(0)})
    cluster.emulator.objects[PODS, "flyte", vanished.name].delete()
    assert not done._exit.done()
    await cluster.start()
    assert await asyncio.wait_for(done.wait(), 20) == Exit(ExitKind.EXITED, 0)
    lost = await asyncio.wait_for(vanished.wait(), 20)
    assert lost.kind is ExitKind.LOST


async def test_a_pod_deleted_by_someone_else_is_lost(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    handle = await backend.launch(spec("r1/a0/1"), Output())
    await cluster.delete_pod(handle.name)
    assert await asyncio.wait_for(handle.wait(), 10) == Exit(ExitKind.LOST, None, "the pod was deleted by someone else")


async def test_abort_deletes_the_pod(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    handle = await backend.launch(spec("r1/a0/1"), Output())
    await cluster.set_status(handle.name, running())
    await asyncio.wait_for(handle.kill("aborted by the user"), 10)
    assert await handle.wait() == Exit(ExitKind.KILLED, None, "aborted by the user")
    assert handle.name not in cluster.pods()
    assert cluster.secret(handle.name) is None


async def test_capacity_is_allocatable_less_running_requests(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    measured = backend.capacity()
    assert measured is not None
    assert measured.allocatable == {
        "cpu": 12.0,
        "memory": float(80 * 2**30),
        "pods": 220.0,
        "gpu": 2.0,
        "gpu:A100": 2.0,
    }
    handle = await backend.launch(
        spec(
            "r1/a0/1", resources={"cpu": {"request": 1.5, "limit": 2.0}, "memory": {"request": 2**30, "limit": 2**30}}
        ),
        Output(),
    )
    await cluster.set_status(handle.name, running())
    await backend._refresh_capacity()
    assert backend.capacity() == Capacity(
        allocatable=measured.allocatable,
        free={"cpu": 10.5, "memory": float(79 * 2**30), "pods": 219.0, "gpu": 2.0, "gpu:A100": 2.0},
    )


# -- an agent with the kubernetes backend, connected to a real gateway -------------------------------------------

PROGRAM = """
import flyte

env = flyte.TaskEnvironment("kube_env", resources=flyte.Resources(cpu=1, memory="512Mi"))


@env.task
async def double(x: int) -> int:
    print("doubling", x, flush=True)
    return x * 2
"""


async def _token(gateway: GatewayProcess, scope: str) -> str:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as http,
        http.post(f"{gateway.endpoint}/api/v1/tokens", json={"scopes": [scope]}) as response,
    ):
        assert response.status in (200, 201), await response.text()
        token: str = (await response.json())["token"]
        return token


async def _start_agent(gateway: GatewayProcess, cluster: FakeCluster, log: Path) -> subprocess.Popen[bytes]:
    """An agent of cluster k1 with the kubernetes backend, as a process, once it has connected."""
    token = await _token(gateway, "agent:k1")
    command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", gateway.endpoint]
    command += ["--cluster", "k1", "--backend", "kubernetes", "--kubeconfig", str(cluster.kubeconfig)]
    command += ["--namespace", "flyte"]
    with log.open("w") as out:
        agent = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; the caller stops it)
            command,
            # Pool pods dial the agent at its pod IP: here, the loopback.
            env={**os.environ, "FLYTE_AGENT_TOKEN": token, "FLYTE_POD_IP": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await async_assert_eventually(lambda: "connected to" in log.read_text(), within=30)
    except BaseException:
        await _stop_agent(agent)
        raise
    return agent


async def _stop_agent(agent: subprocess.Popen[bytes]) -> None:
    agent.terminate()
    # Waited for off the event loop: the agent's last calls go to the API server this loop serves.
    await asyncio.to_thread(agent.wait, 30)


@pytest.fixture
def kube_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(f"sqlite:{tmp_path / 'state.db'}", tmp_path / "gateway").start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
async def federation(
    kube_gateway: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> AsyncIterator[GatewayProcess]:
    """A gateway and an agent of cluster k1 with the kubernetes backend, as real processes."""
    agent = await _start_agent(kube_gateway, cluster, tmp_path / "agent.log")
    try:
        yield kube_gateway
    finally:
        await _stop_agent(agent)


@pytest.mark.timeout(240)  # three processes and a deploy; a loaded CI machine is slow
async def test_an_agent_runs_an_action_in_a_pod(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = _project(tmp_path) / "kube_program.py"
    program.write_text(PROGRAM)
    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet:
        result = await asyncio.to_thread(_run_remote, federation, program)
        assert not kubelet.errors
        assert result.returncode == 0, result.stderr + (tmp_path / "agent.log").read_text()
        assert "output: 42" in result.stdout
        assert len(kubelet.started) == 1
    pod = next(iter(cluster.emulator.objects[PODS, "flyte", kubelet.started[0]].history)).raw
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1000m", "memory": str(512 * 2**20)}
    assert pod["spec"]["containers"][0]["image"] == DEFAULT_IMAGE


UNPULLABLE = "registry.invalid/none:1"


@pytest.mark.timeout(240)
async def test_an_image_that_cannot_be_pulled_fails_the_run_at_once(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = _project(tmp_path) / "kube_program.py"
    program.write_text(PROGRAM.replace('"kube_env",', f'"kube_env", image="{UNPULLABLE}",'))
    async with Kubelet(cluster, tmp_path / "pod-home", unpullable={UNPULLABLE}) as kubelet:
        result = await asyncio.to_thread(_run_remote, federation, program)
    assert not kubelet.errors
    assert result.returncode != 0
    assert "ContainerNotStarted" in result.stderr
    assert f"the image '{UNPULLABLE}' cannot be pulled (ImagePullBackOff)" in result.stderr
    assert len(kubelet.started) == 1, "a user error that retrying cannot fix is not retried"
    assert cluster.pods() == {}, "the pod stuck in back-off was deleted"


def _run_remote(
    gateway: GatewayProcess, program: Path, *task: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`flyte run` in its own process, as a user would: deploy, run, print the output. `task`: its name and
    arguments, `double --x 21` by default."""
    env = {**os.environ, "FLYTE_ENDPOINT": gateway.endpoint, "FLYTE_API_KEY": gateway.token}
    return subprocess.run(
        [sys.executable, "-m", "flyte.cli", "run", str(program), *(task or ("double", "--x", "21"))],
        cwd=program.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_agent_that_cannot_reach_its_cluster_refuses_to_start(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path)  # never started: its kubeconfig points at a closed port
    cluster.kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", "http://127.0.0.1:9"]
    command += ["--cluster", "k1", "--backend", "kubernetes", "--kubeconfig", str(cluster.kubeconfig)]
    env = {**os.environ, "FLYTE_AGENT_TOKEN": "t"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "cannot list pods in namespace 'flyte'" in result.stderr
    assert "Traceback" not in result.stderr


OOM = """
import flyte

env = flyte.TaskEnvironment("kube_oom")


@env.task
async def hog(megabytes: int) -> int:
    return megabytes


@env.task
async def main() -> str:
    try:
        await hog.override(resources=flyte.Resources(memory="64Mi"))(200)
    except flyte.errors.OOMError:
        return "recovered with " + str(await hog.override(resources=flyte.Resources(memory="1Gi"))(200))
    return "no OOM"
"""


@pytest.mark.timeout(240)
async def test_an_oom_killed_pod_is_an_oom_error_the_parent_recovers_from(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = tmp_path / "kube_oom.py"
    program.write_text(OOM)
    async with Kubelet(cluster, tmp_path / "pod-home", memory_needed=200 * 2**20) as kubelet:
        env = {**os.environ, "FLYTE_ENDPOINT": federation.endpoint, "FLYTE_API_KEY": federation.token}
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "flyte.cli", "run", str(program), "main"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert not kubelet.errors
    assert result.returncode == 0, result.stderr
    assert "recovered with 200" in result.stdout
    assert len(kubelet.started) == 3, "the parent, the OOMKilled child and the one with more memory"


def _project(tmp_path: Path) -> Path:
    """A folder of the program's own: a bundle is the program's whole folder, and the agent's logs and the pods'
    homes beside it are not its code (they change between runs, and so would the version)."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    return folder


def _deployments(cluster: FakeCluster) -> dict[str, dict[str, Any]]:
    """The Deployments that exist, by name."""
    return {
        name: dict(obj.raw)
        for (res, _, name), obj in list(cluster.emulator.objects.items())
        if res == DEPLOYMENTS and not obj.deleted
    }


POOLED = """
import asyncio
import os
from pathlib import Path

import flyte

pool_env = flyte.TaskEnvironment(
    "kube_pool",
    resources=flyte.Resources(cpu=0.25, memory="256Mi"),
    env_vars={"POOL_MARK": "warm"},
    reusable=flyte.ReusePolicy(replicas=(1, 3), concurrency=1, idle_ttl=4, scaledown_ttl=1),
)
env = flyte.TaskEnvironment("kube_fan", depends_on=[pool_env])


@pool_env.task
async def square(x: int) -> str:
    # Held until the test has seen the pool grow: every child is in flight at once.
    while not Path(RELEASE).exists():
        await asyncio.sleep(0.05)
    return f"{x * x}@{os.environ['FLYTE_POOL_WORKER']}:{os.environ['POOL_MARK']}"


@env.task
async def fan(n: int) -> str:
    return " ".join(await asyncio.gather(*(square(i) for i in range(n))))
"""


@pytest.mark.timeout(240)
async def test_a_reusable_environment_runs_on_a_deployment_that_scales_and_goes_when_idle(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    program = tmp_path / "kube_pooled.py"
    program.write_text(POOLED.replace("RELEASE", repr(str(release))))
    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet, Deployments(cluster) as controller:
        run = asyncio.create_task(asyncio.to_thread(_run_remote, federation, program, "fan", "--n", "4", timeout=150))

        # Four children, at most three workers of one each: the pool grows from its one replica to three.
        def grown() -> bool:
            found = list(_deployments(cluster).values())
            return len(found) == 1 and found[0]["spec"]["replicas"] == 3

        await async_assert_eventually(lambda: grown() or run.done(), within=120)
        assert grown(), (await run).stderr
        ((name, deployment),) = _deployments(cluster).items()
        await async_assert_eventually(lambda: len(controller.pods_of(name)) == 3)
        # Anyone may dial the pool's port; a hello without the pool's secret gets no assignment, just a close.
        host, _, port = deployment["spec"]["template"]["spec"]["containers"][0]["command"][4].rpartition(":")
        reader, writer = await asyncio.open_connection(host.removeprefix("tcp://"), int(port))
        writer.write(json.dumps({"hello": 1, "worker": f"{name}-x", "secret": "a guess"}).encode() + b"\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        release.touch()
        result = await run
        assert result.returncode == 0, result.stderr + (tmp_path / "agent.log").read_text()
        assert not kubelet.errors

        # The output names the pods that ran the children: pooled workers, not one pod per child.
        squares = result.stdout.split("output:")[-1].strip().strip('"').split()
        assert sorted(int(s.split("@")[0]) for s in squares) == [0, 1, 4, 9]
        workers = {s.split("@")[1].split(":")[0] for s in squares}
        assert len(workers) >= 2, squares
        assert all(w.startswith(f"{name}-") for w in workers), squares
        assert all(s.endswith(":warm") for s in squares)
        assert len([p for p in kubelet.started if not p.startswith(name)]) == 1, "only the parent has its own pod"

        # Idle: down to its floor (scaledown_ttl 1 s), then removed with its Secret (idle_ttl 4 s).
        await async_assert_eventually(lambda: not _deployments(cluster) and cluster.secret(name) is None, within=60)
        versions = cluster.emulator.objects[DEPLOYMENTS, "flyte", name].history
        history = [version.raw["spec"]["replicas"] for version in versions if version is not None]  # None: deleted
        assert max(history) == 3, history
        assert history[0] == history[-1] == 1, history
        await async_assert_eventually(lambda: not controller.pods_of(name))

    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "flyte-agent"
    assert labels["flyte.org/owner"] == "k1"
    assert deployment["metadata"]["annotations"]["flyte.org/key"].startswith("k1/default/development/kube_pool@")
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"flyte.org/owner": "k1", "flyte.org/pool": name}
    assert template["metadata"]["labels"] == {"flyte.org/owner": "k1", "flyte.org/pool": name}
    assert template["spec"]["restartPolicy"] == "Always"
    container = template["spec"]["containers"][0]
    assert container["image"] == DEFAULT_IMAGE
    # Each replica asks for what one worker of the environment needs.
    per_replica = {"cpu": "250m", "memory": str(256 * 2**20)}
    assert container["resources"] == {"requests": per_replica, "limits": per_replica}
    command = container["command"]
    assert command[:4] == ["python", "-m", "flyte._runtime", "--pool"]
    assert command[4].startswith("tcp://127.0.0.1:")
    assert command[5:] == ["--concurrency", "1"]
    variables = {e["name"]: e for e in container["env"]}
    assert variables["FLYTE_ENDPOINT"]["value"] == federation.endpoint
    assert variables["FLYTE_CLUSTER"]["value"] == "k1"
    assert variables["POOL_MARK"]["value"] == "warm"
    assert variables["FLYTE_POOL_WORKER"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["FLYTE_POOL_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": name, "key": "FLYTE_POOL_SECRET"}}
    pool_secret = next(iter(cluster.emulator.objects[SECRETS, "flyte", name].history)).raw["stringData"][
        "FLYTE_POOL_SECRET"
    ]
    assert len(pool_secret) >= 32
    assert pool_secret not in str(deployment)


CRASHING = """
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("kube_crash", reusable=flyte.ReusePolicy(replicas=1))


@env.task
async def survive(x: int) -> str:
    mark = Path(MARK)
    if not mark.exists():
        mark.write_text(os.environ["FLYTE_POOL_WORKER"])
        os._exit(9)  # the worker dies mid-attempt, as on a kill from outside
    return f"{x}@{os.environ['FLYTE_POOL_WORKER']}"
"""


@pytest.mark.timeout(240)
async def test_a_pool_pod_that_dies_loses_its_attempt_which_its_restarted_container_runs_again(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    mark = tmp_path / "crashed-in"
    program = tmp_path / "kube_crash.py"
    program.write_text(CRASHING.replace("MARK", repr(str(mark))))
    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet, Deployments(cluster):
        result = await asyncio.to_thread(_run_remote, federation, program, "survive", "--x", "7", timeout=150)
        assert result.returncode == 0, result.stderr + (tmp_path / "agent.log").read_text()
        assert not kubelet.errors
    pod = mark.read_text()
    # The lost attempt was retried as a system error, on the same pod: the kubelet restarted its container, which
    # took the dead worker's place in the pool. The Deployment never grew.
    assert f"7@{pod}" in result.stdout
    assert kubelet.restarts == {pod: 1}
    assert kubelet.started == [pod]
    (deployment,) = [obj for (res, _, _), obj in cluster.emulator.objects.items() if res == DEPLOYMENTS]
    assert {version.raw["spec"]["replicas"] for version in deployment.history if version is not None} == {1}


# Works where it is written (the variable is set there) and fails in the pod, which has only its own environment.
IMPORT_FAILS = """
import os

import flyte

LIMIT = int(os.environ["KUBE_LOCAL_LIMIT"])
env = flyte.TaskEnvironment("kube_import_env", reusable=flyte.ReusePolicy(replicas=1))


@env.task(retries=1)
async def double(x: int) -> int:
    return x * LIMIT
"""


@pytest.mark.timeout(240)
async def test_a_pool_pod_whose_code_fails_at_import_fails_the_run_with_the_users_error(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "kube_import.py"
    program.write_text(IMPORT_FAILS)
    monkeypatch.setenv("KUBE_LOCAL_LIMIT", "3")
    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet, Deployments(cluster):
        result = await asyncio.to_thread(_run_remote, federation, program)
    assert not kubelet.errors
    assert result.returncode != 0
    assert "importing kube_import.py from the code bundle failed: KeyError: 'KUBE_LOCAL_LIMIT'" in result.stderr
    # The pod stayed up and failed both attempts itself: its container was never restarted.
    assert not kubelet.restarts, kubelet.restarts
    assert len(kubelet.started) == 1, kubelet.started


@pytest.mark.timeout(240)
async def test_a_pool_whose_pods_keep_dying_at_start_fails_the_run_with_their_output(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = tmp_path / "kube_broken.py"
    # An environment whose interpreter cannot start, as in a broken image: every container ends before its hello.
    broken = '"kube_env", env_vars={"PYTHONHOME": "/nonexistent"}, reusable=flyte.ReusePolicy(replicas=1),'
    program.write_text(PROGRAM.replace('"kube_env",', broken))
    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet, Deployments(cluster):
        result = await asyncio.to_thread(_run_remote, federation, program)
    assert not kubelet.errors
    assert result.returncode != 0
    assert "WorkerStartFailed" in result.stderr, result.stderr
    assert "keeps ending (exit code 1" in result.stderr, result.stderr
    assert "Fatal Python error" in result.stderr, "the end of its output comes with the error"


@pytest.mark.timeout(240)
async def test_a_pool_whose_image_cannot_be_pulled_fails_the_run_at_once(
    federation: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = _project(tmp_path) / "kube_program.py"
    reusable = f'"kube_env", image="{UNPULLABLE}", reusable=flyte.ReusePolicy(replicas=2),'
    program.write_text(PROGRAM.replace('"kube_env",', reusable))
    async with Kubelet(cluster, tmp_path / "pod-home", unpullable={UNPULLABLE}) as kubelet, Deployments(cluster):
        result = await asyncio.to_thread(_run_remote, federation, program)
    assert not kubelet.errors
    assert result.returncode != 0
    assert "ContainerNotStarted" in result.stderr
    assert f"the image '{UNPULLABLE}' cannot be pulled (ImagePullBackOff)" in result.stderr
    ((name, deployment),) = [(n, obj) for (res, _, n), obj in cluster.emulator.objects.items() if res == DEPLOYMENTS]
    assert deployment.deleted, "the pool that cannot start is removed"
    # The pool's pods (one or both: the run may fail before the second is made), and no retry's pool after them.
    assert set(kubelet.started) <= {f"{name}-1", f"{name}-2"}, kubelet.started


@pytest.mark.timeout(240)
async def test_a_restarted_agent_takes_over_the_deployment_its_predecessor_left(
    kube_gateway: GatewayProcess, cluster: FakeCluster, tmp_path: Path
) -> None:
    program = _project(tmp_path) / "kube_program.py"
    program.write_text(PROGRAM.replace('"kube_env",', '"kube_env", reusable=flyte.ReusePolicy(replicas=1),'))

    async with Kubelet(cluster, tmp_path / "pod-home") as kubelet, Deployments(cluster):
        first = await _start_agent(kube_gateway, cluster, tmp_path / "agent.log")
        try:
            result = await asyncio.to_thread(_run_remote, kube_gateway, program)
            assert result.returncode == 0, result.stderr + (tmp_path / "agent.log").read_text()
        finally:
            first.kill()  # no clean-up: its Deployment and pod stay, dialling an address nobody serves
            await asyncio.to_thread(first.wait, 30)
        ((name, before),) = _deployments(cluster).items()
        second = await _start_agent(kube_gateway, cluster, tmp_path / "agent-2.log")
        try:
            again = await asyncio.to_thread(_run_remote, kube_gateway, program)
            assert again.returncode == 0, again.stderr + (tmp_path / "agent-2.log").read_text()
            assert "output: 42" in again.stdout
            ((same, after),) = _deployments(cluster).items()
        finally:
            await _stop_agent(second)
    assert not kubelet.errors
    # The same Deployment (the create answered 409), patched to the new agent's address: its pod rolled over.
    assert same == name
    address = [spec["spec"]["template"]["spec"]["containers"][0]["command"][4] for spec in (before, after)]
    assert address[0] != address[1]
    assert kubelet.started == [f"{name}-1", f"{name}-2"]
    assert None not in cluster.emulator.objects[DEPLOYMENTS, "flyte", name].history[:-1], "never deleted meanwhile"
