"""Pods as the Kubernetes backend writes and reads them: manifests from a `LaunchSpec`, and how a pod's status
ends an attempt. Pure functions over plain dicts (the API's JSON), so they are tested without a server.

An attempt is one pod and one Secret of the same deterministic name. The Secret holds `spec.secret_env` (the
assignment with its run-scoped token), which the pod reads through `secretKeyRef`; nothing secret is in the pod
spec, which anyone allowed to list pods can read.

How a pod's status ends an attempt (`classify`):

    Succeeded                                         EXITED 0
    Failed, DisruptionTarget / Evicted / node gone    LOST         (a system error: the gateway retries it)
    Failed, DeadlineExceeded                          TIMEOUT      (activeDeadlineSeconds is the attempt's limit)
    Failed, container OOMKilled                       OOM
    Failed, container terminated                      EXITED code  (detail: its termination message)
    Unknown                                           LOST         (its node stopped answering)
    Pending, image cannot be pulled / bad config      UNSTARTABLE  (a user error: retrying fails the same way)
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from flyte._resources import parse_cpu, parse_quantity
from flyte._wire import ResourcesSpec

from ._protocol import Exit, ExitKind, LaunchSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "flyte-agent"
OWNER = "flyte.org/owner"
"""The agent (its cluster name) that owns a pod: several agents may share a namespace."""
KEY = "flyte.org/key"
"""Annotation: the attempt's `run/action/attempt` key (a label value cannot hold `/`)."""
TRACEPARENT = "flyte.org/traceparent"
CONTAINER = "task"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TYPE_LABEL = "nvidia.com/gpu.product"
"""The node label that names a node's GPU model (as NVIDIA's GPU feature discovery sets it)."""

_IMAGE_FAILURES = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons that end an attempt. `ErrImagePull` alone is not one: the kubelet retries a pull once, and a
transient registry error must not fail the task; a second failure turns into `ImagePullBackOff`."""
WORKER_UID = 10001
"""The user workers run as in pods (`deploy/kind/Dockerfile` makes it)."""
_CONFIG_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})
_LOST_REASONS = frozenset({"Evicted", "NodeLost", "Shutdown", "NodeShutdown", "Terminated", "Preempting"})
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def pod_name(key: str) -> str:
    """A DNS-1123 name derived from the attempt key: readable for `kubectl`, unique by its hash suffix."""
    readable = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")[:40].rstrip("-")
    return f"f-{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def label_value(value: str) -> str:
    """A value Kubernetes accepts as a label: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    return _LABEL_VALUE.sub("_", value)[:63].strip("_.-")


def _cpu(cores: float) -> str:
    return f"{math.ceil(cores * 1000)}m"


def _requests_and_limits(resources: ResourcesSpec) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = _cpu(resources.cpu.request)
        limits["cpu"] = _cpu(resources.cpu.limit)
    if resources.memory is not None:
        requests["memory"] = str(int(resources.memory.request))
        limits["memory"] = str(int(resources.memory.limit))
    if resources.disk is not None:
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = str(resources.disk)
    if resources.gpu is not None:
        # Extended resources are limits only (the request defaults to the limit and may not differ).
        limits[GPU_RESOURCE] = str(resources.gpu.count)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def pod_manifest(
    spec: LaunchSpec,
    *,
    namespace: str,
    owner: str,
    default_image: str,
    kill_grace_seconds: int = 30,
    gpu_type_label: str = DEFAULT_GPU_TYPE_LABEL,
) -> dict[str, Any]:
    """The pod that runs one attempt. Its Secret (`secret_manifest`) has the same name."""
    name = pod_name(spec.key)
    labels = {k: label_value(v) for k, v in spec.labels.items()}
    labels.update({MANAGED_BY: MANAGER, OWNER: label_value(owner)})
    annotations = {KEY: spec.key}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.traceparent:
        annotations[TRACEPARENT] = spec.traceparent
        env.append({"name": "TRACEPARENT", "value": spec.traceparent})
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}} for k in sorted(spec.secret_env)]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or default_image,
        # Never "Always": images loaded into kind (and pinned tags generally) must not be pulled again.
        "imagePullPolicy": "IfNotPresent",
        "command": list(spec.command),
        "env": env,
        "resources": _requests_and_limits(spec.resources),
        # The last lines of output become the termination message when the worker dies without writing one.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Workers talk to the gateway, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Never root, whatever the image says: the runtime image's user, which images without one run as too.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": kill_grace_seconds,
        "containers": [container],
    }
    if spec.timeout_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = max(1, math.ceil(spec.timeout_seconds))
    gpu = spec.resources.gpu
    if gpu is not None:
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        if gpu.type:
            pod_spec["nodeSelector"] = {gpu_type_label: gpu.type}
    volumes, mounts = _secret_volumes(name, spec.secret_files)
    shm = spec.resources.shm
    if shm is not None:
        volume: dict[str, Any] = {"medium": "Memory"}
        if shm != "auto":
            volume["sizeLimit"] = str(int(shm))
        volumes.append({"name": "dshm", "emptyDir": volume})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if volumes:
        pod_spec["volumes"] = volumes
        container["volumeMounts"] = mounts
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": pod_spec,
    }


def _file_key(index: int) -> str:
    return f"file-{index}"


def _secret_volumes(name: str, files: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mounted secrets: one read-only volume of the attempt's Secret per directory, each file an item of it."""
    by_directory: dict[str, list[dict[str, Any]]] = {}
    for index, path in enumerate(sorted(files)):
        directory, _, filename = path.rpartition("/")
        item = {"key": _file_key(index), "path": filename, "mode": 0o400}
        by_directory.setdefault(directory or "/", []).append(item)
    volumes, mounts = [], []
    for number, (directory, items) in enumerate(sorted(by_directory.items())):
        volumes.append({"name": f"secrets-{number}", "secret": {"secretName": name, "items": items}})
        mounts.append({"name": f"secrets-{number}", "mountPath": directory, "readOnly": True})
    return volumes, mounts


def secret_manifest(spec: LaunchSpec, *, namespace: str, owner: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": pod_name(spec.key),
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGER, OWNER: label_value(owner)},
            "annotations": {KEY: spec.key},
        },
        "stringData": {
            **spec.secret_env,
            **{_file_key(index): spec.secret_files[path] for index, path in enumerate(sorted(spec.secret_files))},
        },
    }


def owned_by(obj: dict[str, Any], owner: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY) == MANAGER and labels.get(OWNER) == label_value(owner)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == CONTAINER:
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def has_started(pod: dict[str, Any]) -> bool:
    """Its container runs or ran, so it has output to read."""
    state = _container(pod).get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def classify(pod: dict[str, Any]) -> Exit | None:
    """How the pod ended the attempt, or None while it has not."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    reason = status.get("reason") or ""
    message = status.get("message") or ""
    if phase == "Succeeded":
        return Exit(ExitKind.EXITED, 0)
    if phase == "Unknown":
        return Exit(ExitKind.LOST, detail=f"its node stopped answering {message}".strip())
    container = _container(pod)
    if phase == "Failed":
        disrupted = _condition(status, "DisruptionTarget")
        if reason in _LOST_REASONS or disrupted is not None:
            why = reason or (disrupted or {}).get("reason") or "disrupted"
            return Exit(ExitKind.LOST, detail=f"the pod was {why}: {message or (disrupted or {}).get('message', '')}")
        if reason == "DeadlineExceeded":
            return Exit(ExitKind.TIMEOUT, detail=message or "ran past its activeDeadlineSeconds")
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            code = terminated.get("exitCode")
            if terminated.get("reason") == "OOMKilled":
                return Exit(ExitKind.OOM, code, f"the container was OOMKilled{_limit_of(pod)}")
            return Exit(ExitKind.EXITED, code, (terminated.get("message") or "")[-2000:])
        return Exit(ExitKind.LOST, detail=f"the pod failed: {reason} {message}".strip())
    waiting = (container.get("state") or {}).get("waiting") or {}
    why = waiting.get("reason") or ""
    if why in _IMAGE_FAILURES:
        image = container.get("image") or _spec_image(pod)
        detail = f"the image {image!r} cannot be pulled ({why}): {waiting.get('message', '')}"
        return Exit(ExitKind.UNSTARTABLE, detail=detail)
    if why in _CONFIG_FAILURES:
        return Exit(ExitKind.UNSTARTABLE, detail=f"the container cannot start ({why}): {waiting.get('message', '')}")
    return None


def crash_looping(pod: dict[str, Any]) -> Exit | None:
    """A restarting pod's container that keeps ending (CrashLoopBackOff): how it last ended, with the end of its
    output (the termination message falls back to the log), or None."""
    container = _container(pod)
    waiting = (container.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") != "CrashLoopBackOff":
        return None
    last = (container.get("lastState") or {}).get("terminated") or {}
    code = last.get("exitCode")
    restarts = container.get("restartCount") or 0
    detail = f"its container keeps ending (exit code {code}, restarted {restarts} times)"
    return Exit(ExitKind.START_FAILED, code, detail, output=(last.get("message") or "")[-8192:])


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition of this type when it holds (status "True")."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _spec_image(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


def _limit_of(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")
    return f" at its memory limit of {limit} bytes" if limit else ""


def requests_of(pod: dict[str, Any]) -> dict[str, float]:
    """What a pod takes from its node: the sum of its containers' requests (a limit stands in for a missing one)."""
    total: dict[str, float] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for resource, amount in _amounts(asked).items():
            total[resource] = total.get(resource, 0.0) + amount
    return total


def node_allocatable(node: dict[str, Any], gpu_type_label: str = DEFAULT_GPU_TYPE_LABEL) -> dict[str, float]:
    """A schedulable node's allocatable cpu, memory, pods and GPUs (also by type); nothing for a cordoned one."""
    if (node.get("spec") or {}).get("unschedulable"):
        return {}
    if _condition(node.get("status") or {}, "Ready") is None:
        return {}
    amounts = _amounts((node.get("status") or {}).get("allocatable") or {})
    gpu_type = ((node.get("metadata") or {}).get("labels") or {}).get(gpu_type_label)
    if amounts.get("gpu") and gpu_type:
        amounts[f"gpu:{gpu_type}"] = amounts["gpu"]
    return amounts


def _amounts(quantities: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for resource, name in (("cpu", "cpu"), ("memory", "memory"), ("pods", "pods"), (GPU_RESOURCE, "gpu")):
        if resource in quantities:
            value = str(quantities[resource])
            out[name] = parse_cpu(value) if resource == "cpu" else float(parse_quantity(value))
    return out
