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
    from . import errors, extend, io, remote, storage, types
    from ._cache import Cache, CachePolicy
    from ._condition import ConditionWebhook, new_condition
    from ._config import (
        current_domain,
        current_project,
        init,
        init_from_api_key,
        init_from_config,
        init_in_cluster,
        is_control_plane_available,
    )
    from ._context import TaskContext, ctx, custom_context, get_custom_context, group
    from ._deploy import Deployment, deploy
    from ._devices import AMD_GPU, GPU, HABANA_GAUDI, TPU, Device, DeviceClass, Neuron
    from ._environment import CacheRequest, Environment, SecretRequest, TaskEnvironment
    from ._image import Image
    from ._image_build import build, build_images
    from ._logging import logger, system_logger
    from ._map import map
    from ._placement import Placement
    from ._pod import PodTemplate
    from ._resources import Resources
    from ._retry import Backoff, RetryStrategy
    from ._reusable import ReusePolicy
    from ._run import Run, rerun, run, with_runcontext
    from ._secret import Secret
    from ._task import AsyncFunctionTaskTemplate, TaskTemplate
    from ._timeout import Timeout, TimeoutType
    from ._trace import trace
    from ._trigger import Cron, FixedRate, Trigger, TriggerTime
    from ._unimplemented import (
        AppHandle,
        BaseCheckpoint,
        Checkpoint,
        Documentation,
        ImageBuild,
        Link,
        OnArtifact,
        TriggeredArtifact,
        TriggeredPartition,
        init_passthrough,
        latest_checkpoint,
        load_interactive_ctx,
        load_plugin_config,
        run_python_script,
        serve,
        with_servecontext,
    )

    __version__: str

# Each public name is imported on first use: `import flyte` (and so `flyte --version` and `flyte --help`, whose
# package this is) must not pay for pydantic and the rest until a program uses them.
_HOMES: dict[str, str] = {
    "AMD_GPU": "._devices",
    "AppHandle": "._unimplemented",
    "AsyncFunctionTaskTemplate": "._task",
    "Backoff": "._retry",
    "BaseCheckpoint": "._unimplemented",
    "Cache": "._cache",
    "CachePolicy": "._cache",
    "CacheRequest": "._environment",
    "Checkpoint": "._unimplemented",
    "ConditionWebhook": "._condition",
    "Cron": "._trigger",
    "Deployment": "._deploy",
    "Device": "._devices",
    "DeviceClass": "._devices",
    "Documentation": "._unimplemented",
    "Environment": "._environment",
    "FixedRate": "._trigger",
    "GPU": "._devices",
    "HABANA_GAUDI": "._devices",
    "Image": "._image",
    "ImageBuild": "._unimplemented",
    "Link": "._unimplemented",
    "Neuron": "._devices",
    "OnArtifact": "._unimplemented",
    "Placement": "._placement",
    "PodTemplate": "._pod",
    "Resources": "._resources",
    "RetryStrategy": "._retry",
    "ReusePolicy": "._reusable",
    "Run": "._run",
    "Secret": "._secret",
    "SecretRequest": "._environment",
    "TPU": "._devices",
    "TaskContext": "._context",
    "TaskEnvironment": "._environment",
    "TaskTemplate": "._task",
    "Timeout": "._timeout",
    "TimeoutType": "._timeout",
    "Trigger": "._trigger",
    "TriggerTime": "._trigger",
    "TriggeredArtifact": "._unimplemented",
    "TriggeredPartition": "._unimplemented",
    "build": "._image_build",
    "build_images": "._image_build",
    "ctx": "._context",
    "current_domain": "._config",
    "current_project": "._config",
    "custom_context": "._context",
    "deploy": "._deploy",
    "get_custom_context": "._context",
    "group": "._context",
    "init": "._config",
    "init_from_api_key": "._config",
    "init_from_config": "._config",
    "init_in_cluster": "._config",
    "init_passthrough": "._unimplemented",
    "is_control_plane_available": "._config",
    "latest_checkpoint": "._unimplemented",
    "load_interactive_ctx": "._unimplemented",
    "load_plugin_config": "._unimplemented",
    "logger": "._logging",
    "map": "._map",
    "new_condition": "._condition",
    "rerun": "._run",
    "run": "._run",
    "run_python_script": "._unimplemented",
    "serve": "._unimplemented",
    "system_logger": "._logging",
    "trace": "._trace",
    "with_runcontext": "._run",
    "with_servecontext": "._unimplemented",
}
_SUBMODULES = frozenset({"artifacts", "durable", "errors", "extend", "io", "remote", "report", "storage", "types"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flyte-federation")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def version() -> str:
    """The SDK's version (Flyte 2's `flyte.version()`)."""
    return _version()


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
