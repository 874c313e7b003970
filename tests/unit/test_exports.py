"""The public surface of `flyte`: the exact exported names, and no import of the server-side packages."""

from __future__ import annotations

import json
import subprocess
import sys

import flyte

EXPORTS = [
    "Backoff",
    "Cache",
    "Deployment",
    "Image",
    "Placement",
    "Resources",
    "RetryStrategy",
    "ReusePolicy",
    "Run",
    "Secret",
    "TaskContext",
    "TaskEnvironment",
    "Timeout",
    "__version__",
    "ctx",
    "custom_context",
    "deploy",
    "errors",
    "group",
    "init",
    "init_from_config",
    "io",
    "map",
    "remote",
    "rerun",
    "run",
    "trace",
    "with_runcontext",
]


def test_all_is_sorted_and_pinned() -> None:
    assert flyte.__all__ == sorted(flyte.__all__)
    assert flyte.__all__ == EXPORTS


def test_every_export_exists() -> None:
    missing = [name for name in flyte.__all__ if not hasattr(flyte, name)]
    assert missing == []


def test_flyte_imports_no_server_side_package() -> None:
    program = (
        "import json, sys, flyte, flyte.remote, flyte.io, flyte.errors; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "flyte" in loaded
    assert loaded.isdisjoint({"gateway", "agent", "policies"})
