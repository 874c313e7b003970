"""`flyte.PodTemplate`: a Kubernetes pod spec to start a task's pod from (Flyte 2's name and fields).

A template is accepted on `TaskEnvironment(pod_template=...)` and `@env.task(pod_template=...)` and carried in the
task's settings as plain data (`to_dict()`), so programs written for Flyte 2 define and pass one unchanged.
No backend applies it yet: the process backend has no pod, and the Kubernetes backend builds its pods from
`Resources` and `Placement` (see docs/flyte2-parity.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

__all__ = ["PodTemplate"]

PRIMARY_CONTAINER_DEFAULT_NAME = "primary"


@dataclass
class PodTemplate:
    """A pod spec (a `kubernetes.client.V1PodSpec` or the same as a dict) plus the primary container's name."""

    pod_spec: Any = None
    """The pod spec; the task's image and command go into the container named `primary_container_name`."""

    primary_container_name: str = PRIMARY_CONTAINER_DEFAULT_NAME
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.primary_container_name, str) or not self.primary_container_name:
            raise ValueError(f"PodTemplate: primary_container_name={self.primary_container_name!r} must be a name")
        for field_name in ("labels", "annotations"):
            values = getattr(self, field_name)
            if values is None:
                continue
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                raise ValueError(f"PodTemplate: {field_name}={values!r} must map str to str")
        if self.pod_spec is not None and not isinstance(self.pod_spec, dict) and not hasattr(self.pod_spec, "to_dict"):
            raise ValueError(f"PodTemplate: pod_spec={self.pod_spec!r} must be a V1PodSpec or a dict")

    def to_dict(self) -> dict[str, Any]:
        """The template as plain JSON-able data (the spec through its own `to_dict()` when it has one)."""
        spec = self.pod_spec
        if spec is not None and not isinstance(spec, dict):
            spec = spec.to_dict()
        return {
            "pod_spec": copy.deepcopy(spec),
            "primary_container_name": self.primary_container_name,
            "labels": dict(self.labels or {}),
            "annotations": dict(self.annotations or {}),
        }
