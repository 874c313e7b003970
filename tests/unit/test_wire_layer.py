"""The wire is the bottom layer: importing it loads no other module of flyte, the gateway, agents or policies.

Python runs `flyte/__init__.py` before any submodule; it is lazy (names resolve on first use), so it is the one
module outside `flyte._wire` that importing the wire loads. The import-linter contract in pyproject.toml checks the
import statements; this test checks what a fresh interpreter really loads.
"""

from __future__ import annotations

import json
import subprocess
import sys

import flyte._wire

_PROBE = """
import json, sys
before = set(sys.modules)
import flyte._wire
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by_wire() -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_importing_the_wire_loads_nothing_of_ours_above_it() -> None:
    ours = [m for m in _loaded_by_wire() if m.split(".")[0] in ("flyte", "gateway", "agent", "policies")]
    outside = [m for m in ours if m != "flyte" and m != "flyte._wire" and not m.startswith("flyte._wire.")]
    assert outside == []
    assert "flyte" in ours  # the package's lazy __init__: Python runs it before any submodule


def test_every_exported_name_exists() -> None:
    names = flyte._wire.__all__
    assert len(set(names)) == len(names)
    assert [name for name in names if not hasattr(flyte._wire, name)] == []
