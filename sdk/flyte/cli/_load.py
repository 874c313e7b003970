"""Loading the file given to `flyte run` as a module and picking the task to run from it.

The file is imported under its own name (its stem), never as `__main__`, so its `if __name__ == "__main__":`
block stays out of the way, and it is registered in `sys.modules` before it runs so dataclasses, pydantic
models and pickling can find the module by name, as they would for an ordinary import.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import click

from flyte._task import TaskTemplate

from ._errors import CliError, CliUsageError

# Module names this process loaded from files, and from which file: loading another file with the same stem
# (a second `flyte run` in one process, as in tests) may replace these, but never a module someone else imported.
_loaded_from_files: dict[str, Path] = {}


def load_module(path: Path) -> ModuleType:
    """Import the Python file at `path`; an error in it prints the user's traceback and raises CliError."""
    path = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and name not in _loaded_from_files:
        existing_file = getattr(existing, "__file__", None)
        if existing_file is not None and Path(existing_file).resolve() == path:
            return existing
        raise CliError(
            f"cannot load {path}: its module name '{name}' is already taken by {existing_file or 'a built-in module'}; "
            "rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliUsageError(f"cannot load {path}: not a Python file (expected a .py file)")
    # The file's own directory comes first so its sibling modules import as they do under `python FILE`.
    directory = str(path.parent)
    if not sys.path or sys.path[0] != directory:
        sys.path.insert(0, directory)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _loaded_from_files[name] = path
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        _loaded_from_files.pop(name, None)
        click.echo("".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__))), err=True)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CliError(f"could not load {path}: {type(exc).__name__}: {first_line}") from None
    return module


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame of the user's code: this loader and importlib are noise to them."""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and not filename.startswith("<frozen "):
            break
        tb = tb.tb_next
    return tb


def tasks_in(module: ModuleType) -> dict[str, TaskTemplate[..., Any]]:
    """The module's tasks by attribute name, including tasks it imported from elsewhere."""
    return {attr: value for attr, value in vars(module).items() if isinstance(value, TaskTemplate)}


def find_task(module: ModuleType, task_name: str, display_path: str) -> TaskTemplate[..., Any]:
    """The task called `task_name` in the module: an attribute name, or a task's full name `<env>.<func>`."""
    tasks = tasks_in(module)
    if task_name in tasks:
        return tasks[task_name]
    for task in tasks.values():
        if task.name == task_name:
            return task
    available = f"its tasks are: {', '.join(sorted(tasks))}" if tasks else "it defines no tasks (@env.task)"
    if task_name.startswith("-"):
        raise CliUsageError(f"expected a task name, got {task_name!r}: flyte run's options go before FILE")
    attribute = getattr(module, task_name, None)
    if attribute is not None:
        kind = type(attribute).__name__
        raise CliUsageError(f"'{task_name}' in {display_path} is not a task (it is a {kind}); {available}")
    raise CliUsageError(f"no task '{task_name}' in {display_path}; {available}")
