"""Programs written by tests: a user's module written into a directory and imported, as `flyte.run` callers do."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def write_and_import(directory: Path, name: str, source: str) -> ModuleType:
    """Write `source` as `directory/name.py` and import it under `name` (so cloudpickle and deploys find it)."""
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
