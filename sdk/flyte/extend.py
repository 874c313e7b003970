"""`flyte.extend` (Flyte 2's name): what task plugins build on. Only the task template is available here."""

from __future__ import annotations

from ._config import current_config
from ._pod import PRIMARY_CONTAINER_DEFAULT_NAME
from ._task import AsyncFunctionTaskTemplate, TaskTemplate
from ._unimplemented import missing_class, missing_function

__all__ = [
    "PRIMARY_CONTAINER_DEFAULT_NAME",
    "AsyncFunctionTaskTemplate",
    "TaskPluginRegistry",
    "TaskTemplate",
    "download_code_bundle",
    "get_proto_resources",
    "is_initialized",
    "pod_spec_from_resources",
]

_PLUGINS = "task plugins (custom task types)"


def is_initialized() -> bool:
    """Whether `flyte.init`/`init_from_config` chose remote mode (local mode needs no initialisation)."""
    return current_config().is_remote


TaskPluginRegistry = missing_class("flyte.extend.TaskPluginRegistry", _PLUGINS)
download_code_bundle = missing_function("flyte.extend.download_code_bundle", _PLUGINS)
get_proto_resources = missing_function("flyte.extend.get_proto_resources", "Flyte protobuf resources")
pod_spec_from_resources = missing_function("flyte.extend.pod_spec_from_resources", "Kubernetes pod specs in the SDK")
