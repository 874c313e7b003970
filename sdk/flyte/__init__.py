"""Flyte Federation's SDK: Flyte 2's Python API, run in-process (local mode) or across clusters (remote mode).

import flyte

env = flyte.TaskEnvironment("hello")

@env.task
async def greet(name: str) -> str:
    return f"Hello, {name}!"

flyte.init_from_config()          # no config found: local mode
run = flyte.run(greet, name="World")
print(run.outputs()[0])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import errors, io, remote
    from ._cache import Cache
    from ._config import init, init_from_config
    from ._context import TaskContext, ctx, custom_context, group
    from ._deploy import Deployment, deploy
    from ._environment import TaskEnvironment
    from ._image import Image
    from ._map import map
    from ._placement import Placement
    from ._resources import Resources
    from ._retry import Backoff, RetryStrategy
    from ._reusable import ReusePolicy
    from ._run import Run, rerun, run, with_runcontext
    from ._secret import Secret
    from ._timeout import Timeout
    from ._trace import trace

    __version__: str

# Each public name is imported on first use: `import flyte` (and so `flyte --version` and `flyte --help`, whose
# package this is) must not pay for pydantic and the rest until a program uses them.
_HOMES: dict[str, str] = {
    "Backoff": "._retry",
    "Cache": "._cache",
    "Deployment": "._deploy",
    "Image": "._image",
    "Placement": "._placement",
    "Resources": "._resources",
    "RetryStrategy": "._retry",
    "ReusePolicy": "._reusable",
    "Run": "._run",
    "Secret": "._secret",
    "TaskContext": "._context",
    "TaskEnvironment": "._environment",
    "Timeout": "._timeout",
    "ctx": "._context",
    "custom_context": "._context",
    "deploy": "._deploy",
    "group": "._context",
    "init": "._config",
    "init_from_config": "._config",
    "map": "._map",
    "rerun": "._run",
    "run": "._run",
    "trace": "._trace",
    "with_runcontext": "._run",
}
_SUBMODULES = frozenset({"errors", "io", "remote"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flyte-federation")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


if not TYPE_CHECKING:  # to the type checker the names above are plain imports, and a typo stays an error

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            value = importlib.import_module(f".{name}", __name__)
        elif name in _HOMES:
            value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        elif name == "__version__":
            value = _version()
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
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
