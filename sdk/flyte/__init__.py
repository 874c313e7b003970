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

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from . import errors, extend, io, remote, storage, types
from ._cache import Cache, CachePolicy
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
from ._unimplemented import (
    AppHandle,
    BaseCheckpoint,
    Checkpoint,
    ConditionWebhook,
    Cron,
    Documentation,
    FixedRate,
    ImageBuild,
    Link,
    OnArtifact,
    Trigger,
    TriggeredArtifact,
    TriggeredPartition,
    TriggerTime,
    init_passthrough,
    latest_checkpoint,
    load_interactive_ctx,
    load_plugin_config,
    new_condition,
    run_python_script,
    serve,
    with_servecontext,
)

try:
    __version__ = _dist_version("flyte-federation")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"


def version() -> str:
    """The SDK's version."""
    return __version__


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
