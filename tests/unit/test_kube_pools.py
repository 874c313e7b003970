"""A pool's Deployment as `_kube_pools.deployment_manifest` writes it, and an attempt's pod and Secret with mounted
secrets, checked against the Kubernetes schema (kubernetes-validate, offline) and field by field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kubernetes_validate

from agent.backends import LaunchSpec
from agent.backends._kube_pods import pod_manifest, secret_manifest
from agent.backends._kube_pools import deployment_manifest
from flyte._wire import ResourcesSpec

KUBERNETES = "1.33.0"


def pool_spec(**resources: object) -> LaunchSpec:
    return LaunchSpec(
        key="us-east/train@v7",
        command=["python", "-m", "flyte._runtime", "--pool", "tcp://10.244.1.7:40123", "--concurrency", "4"],
        env={"FLYTE_ENDPOINT": "http://gateway:8080", "FLYTE_CLUSTER": "us-east", "MODEL": "small"},
        cwd=Path("/"),
        secret_env={"FLYTE_POOL_SECRET": "s3cret"},
        image="repo/train:v7",
        resources=ResourcesSpec.model_validate(resources),
    )


def test_a_gpu_pool_deployment_is_valid_and_sizes_each_replica() -> None:
    spec = pool_spec(cpu={"request": 2.0, "limit": 4.0}, gpu={"type": "A100", "count": 1}, shm=2**30)
    manifest = deployment_manifest(spec, namespace="flyte", owner="us-east", replicas=2, default_image="x:1")
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)

    name = manifest["metadata"]["name"]
    assert name.startswith("f-us-east-train-v7-")
    assert manifest["spec"]["replicas"] == 2
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector == {"flyte.org/owner": "us-east", "flyte.org/pool": name}
    template = manifest["spec"]["template"]
    assert template["metadata"]["labels"] == selector, "pool pods are not the backend's attempt pods"
    pod = template["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["image"] == "repo/train:v7"
    assert container["resources"] == {
        "requests": {"cpu": "2000m"},
        "limits": {"cpu": "4000m", "nvidia.com/gpu": "1"},
    }
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL"]["value"] == "small"
    assert env["FLYTE_POOL_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": name, "key": "FLYTE_POOL_SECRET"}}
    assert env["FLYTE_POOL_WORKER"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "s3cret" not in str(manifest)


def test_a_pool_without_an_image_or_resources_runs_the_default_image() -> None:
    manifest = deployment_manifest(
        LaunchSpec(key="k1/plain@v1", command=["python"], env={}, cwd=Path("/")),
        namespace="flyte",
        owner="k1",
        replicas=1,
        default_image="flyte-federation-runtime:latest",
    )
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "flyte-federation-runtime:latest"
    assert container["resources"] == {}


def test_mounted_secrets_become_read_only_volumes_of_the_attempt_s_secret() -> None:
    spec = LaunchSpec(
        key="r1/a0/1",
        command=["python"],
        env={},
        cwd=Path("/"),
        secret_env={"TOK": "t"},
        secret_files={"/etc/creds/b": "bee", "/etc/creds/a": "ay", "/var/x/c": "sea"},
    )
    pod = pod_manifest(spec, namespace="ns", owner="o", default_image="img")
    secret = secret_manifest(spec, namespace="ns", owner="o")
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    kubernetes_validate.validate(secret, KUBERNETES, strict=True)
    assert secret["stringData"] == {"TOK": "t", "file-0": "ay", "file-1": "bee", "file-2": "sea"}
    volumes = {v["name"]: v["secret"] for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert set(mounts) == {"/etc/creds", "/var/x"}
    creds = volumes[mounts["/etc/creds"]]
    assert creds["secretName"] == secret["metadata"]["name"]
    assert [(i["key"], i["path"]) for i in creds["items"]] == [("file-0", "a"), ("file-1", "b")]
    assert all(m["readOnly"] for m in pod["spec"]["containers"][0]["volumeMounts"])
    # The values are in the Secret only, never in the pod's spec.
    assert "bee" not in str(pod)
    assert "sea" not in str(pod)


def test_a_pool_with_mounted_secrets_and_shm_mounts_both() -> None:
    spec = dataclasses.replace(pool_spec(shm=2**30), secret_files={"/etc/creds/token": "t"})
    manifest = deployment_manifest(spec, namespace="flyte", owner="us-east", replicas=1, default_image="x:1")
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == ["/dev/shm", "/etc/creds"]
