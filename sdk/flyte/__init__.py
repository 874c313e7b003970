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

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("flyte-federation")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

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
