"""Flyte 2's public surface: every name of its `flyte.__all__` (and of the sub-modules users import) is importable
here, and each either works or raises a `NotImplementedError` that names what is missing (never AttributeError).

The lists are Flyte 2's own (flyte-sdk `src/flyte/__init__.py` and the sub-packages' `__all__`, read 2026-12);
docs/flyte2-parity.md gives each name's status.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import flyte

FLYTE2_ALL = [
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
    "PodTemplate",
    "Resources",
    "RetryStrategy",
    "ReusePolicy",
    "Secret",
    "SecretRequest",
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
    "get_custom_context",
    "group",
    "init",
    "init_from_api_key",
    "init_from_config",
    "init_in_cluster",
    "init_passthrough",
    "is_control_plane_available",
    "latest_checkpoint",
    "load_interactive_ctx",
    "load_plugin_config",
    "logger",
    "map",
    "new_condition",
    "rerun",
    "run",
    "run_python_script",
    "serve",
    "system_logger",
    "trace",
    "version",
    "with_runcontext",
    "with_servecontext",
]

FLYTE2_SUBMODULES: dict[str, list[str]] = {
    "flyte.artifacts": ["Artifact", "Metadata", "new"],
    "flyte.errors": [
        "ActionAbortedError",
        "ActionNotFoundError",
        "BaseRuntimeError",
        "CodeBundleError",
        "ConditionAlreadyExistsError",
        "ConditionFailedError",
        "ConditionNotFoundError",
        "ConditionTimedOutError",
        "CustomError",
        "DeploymentError",
        "EventAlreadyExistsError",
        "EventFailedError",
        "EventNotFoundError",
        "EventTimedOutError",
        "ImageBuildError",
        "ImagePullBackOffError",
        "InitializationError",
        "InlineIOMaxBytesBreached",
        "InvalidImageNameError",
        "InvalidPackageError",
        "LogsNotYetAvailableError",
        "ModuleLoadError",
        "NonRecoverableError",
        "NotInTaskContextError",
        "OOMError",
        "OnlyAsyncIOSupportedError",
        "ParameterMaterializationError",
        "PrimaryContainerNotFoundError",
        "ReferenceTaskError",
        "RemoteTaskError",
        "RemoteTaskNotFoundError",
        "RemoteTaskUsageError",
        "RestrictedTypeError",
        "RetriesExhaustedError",
        "RunAbortedError",
        "RuntimeDataValidationError",
        "RuntimeSystemError",
        "RuntimeUnknownError",
        "RuntimeUserError",
        "SlowDownError",
        "TaskInterruptedError",
        "TaskTimeoutError",
        "TraceDoesNotAllowNestedTasksError",
        "UnionRpcError",
    ],
    "flyte.io": [
        "PARQUET",
        "DataFrame",
        "DataFrameDecoder",
        "DataFrameEncoder",
        "DataFrameTransformerEngine",
        "Dir",
        "File",
        "lazy_import_dataframe_handler",
    ],
    "flyte.storage": [
        "ABFS",
        "GCS",
        "S3",
        "Storage",
        "exists",
        "get",
        "get_configured_fsspec_kwargs",
        "get_random_local_directory",
        "get_random_local_path",
        "get_stream",
        "get_underlying_filesystem",
        "is_remote",
        "join",
        "put",
        "put_stream",
    ],
    "flyte.types": [
        "FlytePickle",
        "Renderable",
        "TypeEngine",
        "TypeTransformer",
        "TypeTransformerFailedError",
        "guess_interface",
        "literal_string_repr",
    ],
    "flyte.durable": ["now", "sleep", "time"],
    "flyte.notify": ["Email", "Notification", "Slack", "Teams", "Webhook"],
    "flyte.report": [
        "DataProcessingTracker",
        "Report",
        "TrainingLossTracker",
        "current_report",
        "flush",
        "get_tab",
        "log",
        "replace",
    ],
    "flyte.extend": [
        "PRIMARY_CONTAINER_DEFAULT_NAME",
        "AsyncFunctionTaskTemplate",
        "TaskPluginRegistry",
        "TaskTemplate",
        "download_code_bundle",
        "get_proto_resources",
        "is_initialized",
        "pod_spec_from_resources",
    ],
}


def _missing_marker(value: Any) -> bool:
    doc = inspect.getdoc(value) or ""
    return doc.startswith("Not implemented yet")


def _assert_not_implemented(name: str, value: Any) -> None:
    with pytest.raises(NotImplementedError) as caught:
        value()
    message = str(caught.value)
    assert name.rpartition(".")[2] in message
    assert "issue 20" in message


def test_every_flyte2_name_is_exported() -> None:
    assert sorted(set(FLYTE2_ALL) - set(flyte.__all__)) == []
    assert [name for name in FLYTE2_ALL if not hasattr(flyte, name)] == []


@pytest.mark.parametrize("name", FLYTE2_ALL)
def test_each_name_works_or_says_what_is_missing(name: str) -> None:
    value = getattr(flyte, name)
    if _missing_marker(value):
        _assert_not_implemented(f"flyte.{name}", value)


@pytest.mark.parametrize("module_name", sorted(FLYTE2_SUBMODULES))
def test_submodules_export_flyte2_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    expected = FLYTE2_SUBMODULES[module_name]
    assert sorted(set(expected) - set(module.__all__)) == []
    for name in expected:
        value = getattr(module, name)
        if _missing_marker(value):
            _assert_not_implemented(f"{module_name}.{name}", value)


def test_missing_functions_also_refuse_from_async_code() -> None:
    import asyncio

    with pytest.raises(NotImplementedError, match="serve"):
        asyncio.run(flyte.serve.aio("app"))


@pytest.mark.parametrize(
    ("func", "parameters"),
    [
        (flyte.GPU, ["device", "quantity", "partition"]),
        (flyte.TPU, ["device", "partition"]),
        (flyte.Neuron, ["device"]),
        (flyte.AMD_GPU, ["device"]),
        (flyte.HABANA_GAUDI, ["device"]),
        (flyte.init_from_config, ["path_or_config", "root_dir", "log_level", "log_format", "project", "domain"]),
        (flyte.init_from_api_key, ["api_key", "project", "domain", "root_dir", "log_level", "log_format"]),
        (flyte.init_in_cluster, ["org", "project", "domain", "api_key", "endpoint", "insecure"]),
        (flyte.Backoff, ["base", "factor", "cap"]),
        (flyte.Timeout, ["max_runtime", "max_queued_time"]),
        (flyte.PodTemplate, ["pod_spec", "primary_container_name", "labels", "annotations"]),
        (flyte.Device, ["quantity", "device_class", "device", "partition"]),
    ],
)
def test_signatures_take_flyte2_parameter_names(func: Any, parameters: list[str]) -> None:
    accepted = list(inspect.signature(func).parameters)
    assert accepted[: len(parameters)] == parameters


def test_small_names_behave_as_in_flyte2() -> None:
    assert flyte.version() == flyte.__version__
    assert isinstance(flyte.TaskEnvironment("surface_env"), flyte.Environment)
    assert flyte.AsyncFunctionTaskTemplate is flyte.TaskTemplate
    assert flyte.current_project() == "default"
    assert flyte.current_domain() == "development"
    assert flyte.is_control_plane_available() is False
    assert flyte.get_custom_context() == {}
    with flyte.custom_context(team="ml"):
        assert flyte.get_custom_context() == {"team": "ml"}
    assert flyte.logger.name == "flyte.user"
    assert flyte.system_logger.name == "flyte"
    assert repr(flyte.TriggerTime) == "flyte.TriggerTime"
    assert flyte.storage.is_remote("s3://bucket/key")
    assert not flyte.storage.is_remote("/tmp/x")
    with pytest.raises(NotImplementedError, match="issue 20"):
        flyte.storage.get_underlying_filesystem("s3")
