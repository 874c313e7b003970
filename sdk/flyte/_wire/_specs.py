"""The wire shapes of a task's settings (`Resources.to_dict()`, `ReusePolicy.to_dict()`, `Placement.to_dict()`), with
bounds, checked wherever a spec or an override arrives: deployment and child submission use the same models.

The settings travel as plain mappings (every reader does `.get(...)` on them), so each validator checks the mapping
against its model and passes on the model's normalised dump. A value a placement pass or a backend could not judge
(a CPU request of "abc", a memory request of [1], a timeout of 1e308, NaN) is refused here, at the edge, naming the
field, instead of failing later for everyone.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ._base import WireModel

MAX_CPU = 4096.0
"""Cores one attempt may ask for."""
MAX_BYTES = 64 * 2**40
"""Memory, disk or shared memory one attempt may ask for: 64 Ti."""
MAX_GPU = 64
"""GPUs one attempt may ask for."""
MAX_SECONDS = 7 * 24 * 3600.0
"""The longest timeout or retry delay: 7 days."""
MAX_TTL = 30 * 24 * 3600.0
"""The longest a reusable environment's idle workers are kept."""

Cores = Annotated[float, Strict(), Field(gt=0, le=MAX_CPU, allow_inf_nan=False)]
Bytes = Annotated[int, Strict(), Field(gt=0, le=MAX_BYTES)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
_Word = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RequestLimit(_Spec):
    request: float
    limit: float

    @model_validator(mode="after")
    def _ordered(self) -> _RequestLimit:
        if self.limit < self.request:
            raise ValueError("the limit must be >= the request")
        return self


class _CpuSpec(_RequestLimit):
    request: Cores
    limit: Cores


class _MemorySpec(_RequestLimit):
    request: Bytes
    limit: Bytes


class _GpuSpec(_Spec):
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    count: Annotated[int, Strict(), Field(ge=1, le=MAX_GPU)]


class ResourcesSpec(_Spec):
    """`Resources.to_dict()`: cores as numbers, sizes in bytes."""

    cpu: _CpuSpec | None = None
    memory: _MemorySpec | None = None
    gpu: _GpuSpec | None = None
    disk: Bytes | None = None
    shm: Bytes | Literal["auto"] | None = None


class ReusableSpec(_Spec):
    """`ReusePolicy.to_dict()`."""

    min_replicas: Annotated[int, Strict(), Field(ge=0, le=1000)]
    max_replicas: Annotated[int, Strict(), Field(ge=1, le=1000)]
    concurrency: Annotated[int, Strict(), Field(ge=1, le=10_000)]
    idle_ttl: Annotated[float, Strict(), Field(gt=0, le=MAX_TTL, allow_inf_nan=False)] | None = None
    scaledown_ttl: Annotated[float, Strict(), Field(gt=0, le=MAX_TTL, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ReusableSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class PlacementSpec(_Spec):
    """`Placement.to_dict()`."""

    regions: list[_Word] = Field(default_factory=list, max_length=256)
    clouds: list[_Word] = Field(default_factory=list, max_length=256)
    clusters: list[_Word] = Field(default_factory=list, max_length=1024)
    labels: dict[_Word, Annotated[str, StringConstraints(max_length=253)]] = Field(default_factory=dict, max_length=64)
    avoid: list[_Word] = Field(default_factory=list, max_length=1024)
    spread: Annotated[bool, Strict()] = False
    prefer_warm: Annotated[bool, Strict()] = True


def _checked(model: type[_Spec]) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        try:
            dumped: dict[str, Any] = model.model_validate(value).model_dump(exclude_unset=True)
        except ValidationError as error:
            # Re-raised as a ValueError so the outer model's error names the whole path (overrides.resources...).
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        return dumped

    return AfterValidator(check)


Backoff = dict[
    Annotated[str, StringConstraints(pattern=r"^(base|factor|cap)$")],
    Annotated[float, Strict(), Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)],
]
"""A retry's delay: base, factor and cap, in seconds (finite: the bounds refuse NaN and infinity)."""
ResourcesDict = Annotated[dict[str, Any], _checked(ResourcesSpec)]
ReusableDict = Annotated[dict[str, Any], _checked(ReusableSpec)]
PlacementDict = Annotated[dict[str, Any], _checked(PlacementSpec)]


class TaskOverrides(WireModel):
    """What `task.override(...)` changed for one call: it wins over the deployed task's settings."""

    resources: ResourcesDict | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    timeout_seconds: Seconds | None = None
    max_queued_seconds: Seconds | None = None
    reusable: ReusableDict | None = None
    reusable_off: bool = False
    placement: PlacementDict | None = None
    env_vars: dict[str, str] | None = None
    """The call's variables over the task's (a reusable task then runs in its own process: `reusable_off`)."""


def derived_env_var(key: str) -> str:
    """The environment variable a secret is handed to its task in when no name is chosen: the key upper-cased with every
    other character turned into '_' (`flyte.Secret.env_var`)."""
    derived = re.sub(r"[^A-Za-z0-9]", "_", key).upper()
    # A key such as "1password" would otherwise give a name no shell can export.
    return f"_{derived}" if derived[:1].isdigit() else derived
