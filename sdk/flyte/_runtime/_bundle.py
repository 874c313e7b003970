"""Loading a code bundle: its Python files are imported by their file names (never as `__main__`), which defines
their environments and tasks, so a task is found by its name `<env>.<function>`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from .._environment import registered_environments
from .._task import TaskTemplate
from ..errors import RemoteTaskNotFoundError

_loaded: set[Path] = set()


def load_bundle(directory: Path) -> None:
    directory = directory.resolve()
    if directory in _loaded:
        return
    sys.path.insert(0, str(directory))
    for path in sorted(directory.rglob("*.py")):
        relative = path.relative_to(directory).with_suffix("")
        name = ".".join(relative.parts)
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    _loaded.add(directory)


def find_task(name: str) -> TaskTemplate[..., Any]:
    env_name, _, func = name.rpartition(".")
    env = registered_environments().get(env_name)
    task = env.tasks.get(func) if env is not None else None
    if task is None:
        raise RemoteTaskNotFoundError(f"the code bundle defines no task {name}")
    return task
