"""Loading a code bundle: the modules its manifest names are imported (never as `__main__`), which defines their
environments and tasks, so a task is found by its name `<env>.<function>`. The bundle holds the program's whole
source root, so those modules import the project's other modules as they do on the deploying machine.

A bundle is a gzipped tar in the gateway's blob store, named by its digest. An agent extracts it once for the local
processes it starts; a worker in a pod, which cannot see the agent's files, fetches it with its run token.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._environment import registered_environments
from .._source import BUNDLE_MANIFEST
from .._task import TaskTemplate
from ..errors import RemoteTaskNotFoundError

_loaded: set[Path] = set()


def load_bundle(directory: Path) -> None:
    """Import the modules that define the bundle's tasks, with the bundle's folders on `sys.path` as on the
    deploying machine, so their own imports of the project's other modules and packages resolve.

    A module that raises fails the load with `BundleLoadError` (the attempt fails with it as the user's error), and
    is not left half-imported: the next call imports it once more, so a warm worker reports the same failure for
    every attempt it is given instead of dying and being restarted. Each module runs with `sys.argv` as
    `python module.py` would give it (just the file's path): a program that reads its command line at import time
    must not see the worker's own arguments."""
    if directory in _loaded:
        return  # a warm worker loads its bundle once, and is given the same path for every attempt
    given, directory = directory, directory.resolve()
    if directory in _loaded:
        _loaded.add(given)
        return
    manifest_path = directory / BUNDLE_MANIFEST
    argv = sys.argv
    try:
        if not manifest_path.exists():
            _load_every_file(directory)
        else:
            manifest = json.loads(manifest_path.read_text())
            for relative in reversed(manifest["paths"]):
                folder = str((directory / relative).resolve())
                if folder not in sys.path:
                    sys.path.insert(0, folder)
            importlib.invalidate_caches()
            for module in manifest["modules"]:
                spec = importlib.util.find_spec(module)
                origin = Path(spec.origin) if spec is not None and spec.origin else directory / module
                _import_as_program(directory, origin, functools.partial(importlib.import_module, module))
    finally:
        sys.argv = argv
    _loaded.update((directory, given))


def _import_as_program(directory: Path, path: Path, load: Callable[[], object]) -> None:
    """Run `load` (which imports the module at `path`) with `sys.argv` as `python path` gives it; an error it
    raises becomes a `BundleLoadError` whose traceback starts in the user's module, as `python module.py` prints."""
    sys.argv = [str(path)]
    try:
        load()
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        frames = error.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != str(path):
            frames = frames.tb_next
        if frames is not None:
            error = error.with_traceback(frames)
        shown = path.relative_to(directory) if path.is_relative_to(directory) else path
        raise BundleLoadError(shown, error) from error


def _load_every_file(directory: Path) -> None:
    """Bundles made before bundles had a manifest held only task files: import each by its file name."""
    if str(directory) not in sys.path:
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
        try:
            _import_as_program(directory, path, functools.partial(spec.loader.exec_module, module))
        except BundleLoadError:
            sys.modules.pop(name, None)  # as `import` does: a module that raised is not left half-imported
            raise


def user_paths(text: str | None, bundle: Path, source_root: str | None) -> str | None:
    """`text` (a traceback) with the paths of the bundle's files written as the user's, under `source_root`: a
    remote traceback then points at the file the user edits, not at an agent's copy of it."""
    if not text or not source_root:
        return text
    user = source_root.rstrip("/\\") + "/"
    for here in dict.fromkeys((str(bundle), str(bundle.resolve()))):
        if here.rstrip(os.sep):  # never the filesystem's root: that would rewrite every path
            text = text.replace(here.rstrip(os.sep) + os.sep, user)
    return text


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
