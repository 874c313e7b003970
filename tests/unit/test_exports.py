"""The public surface of `flyte`: the exact exported names, and no import of the server-side packages."""

from __future__ import annotations

import json
import subprocess
import sys

import flyte

EXPORTS = [
    "AMD_GPU",
    "GPU",
    "HABANA_GAUDI",
    "TPU",
    "AppHandle",
    "AsyncFunctionTaskTemplate",
    "Backoff",
    "BaseCheckpoint",
    "Cache",
    "CachePolicy",
    "CacheRequest",
    "Checkpoint",
    "ConditionWebhook",
    "Cron",
    "Deployment",
    "Device",
    "DeviceClass",
    "Documentation",
    "Environment",
    "FixedRate",
    "Image",
    "ImageBuild",
    "Link",
    "Neuron",
    "OnArtifact",
    "Placement",
    "PodTemplate",
    "Resources",
    "RetryStrategy",
    "ReusePolicy",
    "Run",
    "Secret",
    "SecretRequest",
    "TaskContext",
    "TaskEnvironment",
    "TaskTemplate",
    "Timeout",
    "TimeoutType",
    "Trigger",
    "TriggerTime",
    "TriggeredArtifact",
    "TriggeredPartition",
    "__version__",
    "build",
    "build_images",
    "ctx",
    "current_domain",
    "current_project",
    "custom_context",
    "deploy",
    "errors",
    "extend",
    "get_custom_context",
    "group",
    "init",
    "init_from_api_key",
    "init_from_config",
    "init_in_cluster",
    "init_passthrough",
    "io",
    "is_control_plane_available",
    "latest_checkpoint",
    "load_interactive_ctx",
    "load_plugin_config",
    "logger",
    "map",
    "new_condition",
    "remote",
    "rerun",
    "run",
    "run_python_script",
    "serve",
    "storage",
    "system_logger",
    "trace",
    "types",
    "version",
    "with_runcontext",
    "with_servecontext",
]


def test_all_is_pinned() -> None:
    # The order is ruff's isort-style sort (RUF022), which lint keeps; the set is what this pins.
    assert flyte.__all__ == EXPORTS


def test_every_export_exists() -> None:
    missing = [name for name in flyte.__all__ if not hasattr(flyte, name)]
    assert missing == []


def test_flyte_imports_no_server_side_package() -> None:
    program = (
        "import json, sys, flyte, flyte.remote, flyte.io, flyte.errors, flyte.storage, flyte.types, flyte.extend; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "flyte" in loaded
    assert loaded.isdisjoint({"gateway", "agent", "policies"})
