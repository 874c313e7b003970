"""Loading a code bundle: its Python files are imported by their file names (never as `__main__`), which defines
their environments and tasks, so a task is found by its name `<env>.<function>`.

A bundle is a gzipped tar in the gateway's blob store, named by its digest. An agent extracts it once for the local
processes it starts; a worker in a pod, which cannot see the agent's files, fetches it with its run token.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from .._environment import registered_environments
from .._task import TaskTemplate
from ..errors import RemoteTaskNotFoundError

_loaded: set[Path] = set()


def load_bundle(directory: Path) -> None:
    """Import every module of the bundle. A module that raises is taken out of `sys.modules` again, as `import`
    does, and the error goes to the caller (the attempt fails with it as the user's error); the next call imports
    the modules that failed once more, so a warm worker reports the same failure for every attempt it is given
    instead of dying and being restarted.

    Each module is executed with `sys.argv` as `python module.py` would give it (just the file's path): a program
    that reads its command line at import time must not see the worker's own arguments."""
    directory = directory.resolve()
    if directory in _loaded:
        return
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    argv = sys.argv
    try:
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
            sys.argv = [str(path)]
            try:
                spec.loader.exec_module(module)
            except BaseException as error:
                sys.modules.pop(name, None)
                if isinstance(error, KeyboardInterrupt):
                    raise
                # The traceback starts in the user's module, as `python module.py` prints it, not in importlib.
                frames = error.__traceback__
                while frames is not None and frames.tb_frame.f_code.co_filename != str(path):
                    frames = frames.tb_next
                if frames is not None:
                    error = error.with_traceback(frames)
                raise BundleLoadError(path.relative_to(directory), error) from error
    finally:
        sys.argv = argv
    _loaded.add(directory)


class BundleLoadError(Exception):
    """A module of the code bundle raised (or called `sys.exit`) while it was imported: the user's error. It is
    reported with the original exception's type, message and traceback, so `except ValueError` in a parent works
    as for an error the task's body raised."""

    def __init__(self, module: Path, error: BaseException) -> None:
        super().__init__(f"importing {module} from the code bundle failed: {type(error).__name__}: {error}")
        self.module = module
        self.error = error


def find_task(name: str) -> TaskTemplate[..., Any]:
    env_name, _, func = name.rpartition(".")
    env = registered_environments().get(env_name)
    task = env.tasks.get(func) if env is not None else None
    if task is None:
        raise RemoteTaskNotFoundError(f"the code bundle defines no task {name}")
    return task


def extract_bundle(data: bytes, target: Path) -> None:
    """Extract a bundle into `target` atomically: a reader sees all of it (with `.complete`) or nothing."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}")
    staging.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(staging, filter="data")
    (staging / ".complete").write_text(json.dumps({"extracted_at": time.time()}))
    if target.exists():
        return
    staging.rename(target)


def fetch_bundle(endpoint: str, token: str, digest: str) -> Path:
    """The bundle `digest` from the gateway's blob store, extracted under the temporary directory (a pod's)."""
    from .._client import GatewayBlobs

    target = Path(tempfile.gettempdir()) / "flyte-bundles" / digest
    if not (target / ".complete").exists():
        extract_bundle(GatewayBlobs(endpoint, token).get(f"blob:{digest}"), target)
    return target
