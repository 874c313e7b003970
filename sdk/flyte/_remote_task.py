"""A deployed task known only by its spec in the gateway's registry: called without importing its code.

`flyte.remote.Task.get(...)` in remote mode resolves a task version from the registry and builds a `RemoteTask` from
its deployed spec: the inputs' names, defaults and JSON schemas, and the output's. Calling it checks the arguments
against those schemas before anything is submitted (a wrong type fails at the call, as a local call would), encodes
them as the task's own code would (JSON for JSON-friendly types, cloudpickle otherwise), and decodes the output by
the spec: JSON values as their JSON form (a pydantic model arrives as a dict), pickled values with cloudpickle.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Mapping
from datetime import timedelta
from typing import Any

import cloudpickle
import pydantic_core

from ._codec import EncodedValue, encoded, value_bytes
from ._interface import EncodedInputs, as_outputs
from ._naming import child_action_name
from ._placement import Placement
from ._resources import Resources
from ._retry import RetryStrategy, normalize_retries
from ._reusable import ReusePolicy
from ._schema import describe, schema_errors
from ._timeout import Timeout, normalize_timeout
from ._wire import ParameterSpec, PlacementSpec, ResourcesSpec, ReusableSpec, TaskOverrides, TaskSpec, TaskVersion
from .errors import RemoteTaskNotFoundError, ValueEncodingError


class SchemaCodec:
    """Encodes and decodes one parameter's values by its deployed spec (kind and JSON schema)."""

    def __init__(self, kind: str | None, schema: dict[str, Any] | None, where: str):
        self.kind = kind or ("json" if schema is not None else "pickle")
        self.schema = schema
        self.where = where

    def encode(self, value: object) -> EncodedValue:
        if self.kind == "pickle":
            try:
                return encoded("pickle", cloudpickle.dumps(value))
            except Exception as e:
                raise ValueEncodingError(f"{self.where} cannot be pickled ({type(value).__name__}): {e}") from None
        try:
            data = pydantic_core.to_json(value)
        except pydantic_core.PydanticSerializationError as e:
            expected = describe(self.schema) if self.schema is not None else "a JSON value"
            raise ValueEncodingError(
                f"{self.where} expects {expected}, got {type(value).__name__}, which has no JSON form: {e}"
            ) from None
        if self.schema:
            errors = schema_errors(json.loads(data), self.schema)
            if errors:
                joint = " " if errors[0].startswith("expects") else ": "
                raise ValueEncodingError(f"{self.where}{joint}{errors[0]}")
        return encoded("json", data)

    def decode(self, value: EncodedValue) -> Any:
        data = value_bytes(value)
        if value.kind == "pickle":
            return cloudpickle.loads(data)
        decoded = json.loads(data)
        if isinstance(decoded, list) and self.schema is not None and "prefixItems" in self.schema:
            return tuple(decoded)
        return decoded


@dataclasses.dataclass(frozen=True)
class RemoteParameter:
    name: str
    required: bool
    codec: SchemaCodec


class RemoteInterface:
    """A deployed task's interface, from its spec: the same surface as `TaskInterface` for calls and runs."""

    def __init__(self, spec: TaskSpec):
        self.task_name = spec.name
        self.signature_text = spec.signature
        self.digest = spec.interface_digest
        self.parameters = tuple(self._parameter(spec.name, p) for p in spec.inputs)
        self.by_name = {p.name: p for p in self.parameters}
        self.has_output = spec.output != "None"
        self.output_codec = SchemaCodec(spec.output_kind, spec.output_schema, f"output of task {spec.name}")
        schema = spec.output_schema or {}
        self.output_arity = len(schema["prefixItems"]) if "prefixItems" in schema else 1

    @staticmethod
    def _parameter(task: str, p: ParameterSpec) -> RemoteParameter:
        return RemoteParameter(
            p.name, p.required, SchemaCodec(p.kind, p.json_schema, f"input '{p.name}' of task {task}")
        )

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments by name; an optional input not given is left out, so the task's own default applies."""
        if len(args) > len(self.parameters):
            raise TypeError(f"{self.task_name} takes {len(self.parameters)} arguments but {len(args)} were given")
        bound = {p.name: value for p, value in zip(self.parameters, args, strict=False)}
        for key, value in kwargs.items():
            if key not in self.by_name:
                raise TypeError(f"{self.task_name} got an unexpected argument '{key}'; it takes {self.signature_text}")
            if key in bound:
                raise TypeError(f"{self.task_name} got multiple values for argument '{key}'")
            bound[key] = value
        for p in self.parameters:
            if p.required and p.name not in bound:
                raise TypeError(f"{self.task_name} is missing the argument '{p.name}'; it takes {self.signature_text}")
        return bound

    def encode_inputs(self, bound: Mapping[str, Any]) -> EncodedInputs:
        return EncodedInputs.of({name: self.by_name[name].codec.encode(value) for name, value in bound.items()})

    def decode_inputs(self, inputs: EncodedInputs) -> dict[str, Any]:
        return {name: self.by_name[name].codec.decode(value) for name, value in inputs.values.items()}

    def as_outputs(self, value: Any) -> tuple[Any, ...]:
        return as_outputs(self.has_output, self.output_arity, value)


_RESOLVED: dict[tuple[str, str, str, str, str], tuple[float, TaskVersion]] = {}
_LATEST_TTL = 10.0
"""Seconds a resolved "latest" is reused; an exact version never changes and is kept."""


def fetch_task_version(name: str, version: str | None, project: str | None, domain: str | None) -> TaskVersion:
    """A task version from the gateway's registry (latest when `version` is None), remembered for the process.

    Sync on purpose, like the blob backend: a call resolves its task when it is made, so a bad argument fails at
    the call and the child's name is taken in call order; a reference resolves once per process (or per
    `_LATEST_TTL` for the latest version), so the round trip is paid once.
    """
    from ._config import current_config

    config = current_config()
    assert config.endpoint is not None
    project = project or config.project
    domain = domain or config.domain
    key = (config.endpoint, project, domain, name, version or "")
    now = time.monotonic()
    cached = _RESOLVED.get(key)
    if cached is not None and (version is not None or now - cached[0] < _LATEST_TTL):
        return cached[1]
    query = urllib.parse.urlencode({"project": project, "domain": domain} | ({"version": version} if version else {}))
    url = f"{config.endpoint.rstrip('/')}/api/v1/tasks/{urllib.parse.quote(name)}?{query}"
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            found = TaskVersion.model_validate_json(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {error.code}"
        if error.code == 404:
            raise RemoteTaskNotFoundError(f"no deployed task {name!r} in {project}/{domain}: {message}") from None
        raise RemoteTaskNotFoundError(f"cannot resolve deployed task {name!r}: {message}") from None
    except urllib.error.URLError as error:
        raise RemoteTaskNotFoundError(
            f"cannot resolve deployed task {name!r}: the gateway at {config.endpoint} is unreachable ({error.reason})"
        ) from None
    _RESOLVED[key] = (now, found)
    return found


class RemoteTask:
    """A task version from the registry, callable inside a task or with `flyte.run`, with optional overrides."""

    is_async = True

    def __init__(self, version: TaskVersion, overrides: TaskOverrides | None = None):
        self.task_version = version
        self.name = version.spec.name
        self.version = version.version
        self.project = version.project
        self.domain = version.domain
        self.interface = RemoteInterface(version.spec)
        self.identity = f"{self.name}@{self.interface.digest}"
        self.deployed_version: str | None = version.version
        self.overrides = overrides

    def __repr__(self) -> str:
        return f"RemoteTask({self.name} version {self.version}: {self.interface.signature_text})"

    def child_call(self, parent: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str, EncodedInputs]:
        inputs = self.interface.encode_inputs(self.interface.bind(args, kwargs))
        return child_action_name(parent.action_name, self.identity, inputs.digest, next(parent.calls)), inputs

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self.aio(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        from ._context import current_action
        from ._remote_controller import RemoteController

        parent = current_action.get()
        if parent is None or not isinstance(parent.controller, RemoteController):
            raise RemoteTaskNotFoundError(
                f"{self.name} is a deployed task: call it from inside a task running remotely, or run it with flyte.run"
            )
        return parent.controller.submit_deployed(self, parent, args, kwargs)

    def override(
        self,
        *,
        resources: Resources | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: int | float | timedelta | Timeout | None = None,
        reusable: ReusePolicy | str | None = None,
        placement: Placement | None = None,
        **unsupported: Any,
    ) -> RemoteTask:
        """A copy whose calls change these settings of the deployed task (the others are fixed by its deployment)."""
        if unsupported:
            raise ValueError(
                f"override of deployed task {self.name}: {', '.join(sorted(unsupported))} cannot be overridden "
                "per call; use resources, retries, timeout, reusable or placement"
            )
        if isinstance(reusable, str) and reusable != "off":
            raise ValueError(f"override: reusable={reusable!r}; use a ReusePolicy or 'off'")
        old = self.overrides or TaskOverrides()
        limit = normalize_timeout(timeout) if timeout is not None else None
        new = old.model_copy(
            update={
                "resources": ResourcesSpec.model_validate(resources.to_dict())
                if resources is not None
                else old.resources,
                "retries": normalize_retries(retries).count if retries is not None else old.retries,
                "timeout_seconds": limit.max_runtime_seconds if limit is not None else old.timeout_seconds,
                "reusable": ReusableSpec.model_validate(reusable.to_dict())
                if isinstance(reusable, ReusePolicy)
                else old.reusable,
                "reusable_off": reusable == "off" or old.reusable_off,
                "placement": PlacementSpec.model_validate(placement.to_dict())
                if placement is not None
                else old.placement,
            }
        )
        return RemoteTask(self.task_version, new)
