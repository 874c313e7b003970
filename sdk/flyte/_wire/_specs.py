"""The wire shapes of a task's settings (`Resources.to_dict()`, `ReusePolicy.to_dict()`, `Placement.to_dict()`,
`Backoff.to_dict()`, `Cache.to_dict()`) and of a call's overrides, with bounds, checked wherever a spec or an override
arrives: deployment and child submission use the same models.

Each is a typed model that readers use by attribute, and serialises to exactly the JSON it always had: only the
fields its sender set (the keys of `to_dict()`), so stored specs and old messages parse, and new ones read the same
to an older reader. A value a placement pass or a backend could not judge (a CPU request of "abc", a memory request
of [1], a timeout of 1e308, NaN) is refused here, at the edge, naming the field, instead of failing later for everyone.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    model_serializer,
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

    @model_serializer(mode="plain")
    def _as_sent(self) -> dict[str, Any]:
        # The fields the sender set, and only those: the JSON these settings had as checked plain mappings. Read
        # through the model's own slots: a spec has no private attributes, whose set-up costs more than its parse.
        given = self.__pydantic_fields_set__
        return {key: value for key, value in self.__dict__.items() if key in given}

    def __eq__(self, other: object) -> bool:
        # By content: the sender's key order (a kept-order spec's private state) is not part of its value.
        if not isinstance(other, _Spec):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *(repr(value) for value in self.__dict__.values())))


class _KeptOrder(_Spec):
    """A setting that travelled as an unchecked mapping (backoff, cache): its keys go out in the order they came in,
    as they always did, so a stored spec's JSON (and its content digest) does not change."""

    _sent_order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _note_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        spec = handler(data)
        if isinstance(data, dict) and isinstance(spec, _KeptOrder):
            spec._sent_order = tuple(data)
        return spec

    @model_serializer(mode="plain")
    def _as_sent(self) -> dict[str, Any]:
        sent = super()._as_sent()
        rank = {key: index for index, key in enumerate(self._sent_order)}
        return {key: sent[key] for key in sorted(sent, key=lambda key: rank.get(key, len(rank)))}


class _RequestLimit(_Spec):
    request: float
    limit: float

    @model_validator(mode="after")
    def _ordered(self) -> _RequestLimit:
        if self.limit < self.request:
            raise ValueError("the limit must be >= the request")
        return self


class CpuSpec(_RequestLimit):
    request: Cores
    limit: Cores


class MemorySpec(_RequestLimit):
    request: Bytes
    limit: Bytes


class GpuSpec(_Spec):
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    count: Annotated[int, Strict(), Field(ge=1, le=MAX_GPU)]


class ResourcesSpec(_Spec):
    """`Resources.to_dict()`: cores as numbers, sizes in bytes."""

    cpu: CpuSpec | None = None
    memory: MemorySpec | None = None
    gpu: GpuSpec | None = None
    disk: Bytes | None = None
    shm: Bytes | Literal["auto"] | None = None

    def request(self, resource: Literal["cpu", "memory"]) -> float | None:
        """The declared request of cpu (cores) or memory (bytes); None: none declared."""
        spec = self.cpu if resource == "cpu" else self.memory
        return None if spec is None else spec.request

    def limit(self, resource: Literal["cpu", "memory"]) -> float | None:
        """The declared limit of cpu (cores) or memory (bytes); None: none declared."""
        spec = self.cpu if resource == "cpu" else self.memory
        return None if spec is None else spec.limit


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


def warm_key(env: str, version: str) -> str:
    """`env@version`: a reusable environment's version, as pool keys and pool names carry it."""
    return f"{env}@{version}"


def pool_key(project: str, domain: str, env: str, version: str) -> str:
    """The reusable pool an action of environment `env` at `version` runs in, as placement accounts it (the gateway
    reserves its replicas' room, the agent reports it)."""
    return f"{project}/{domain}/{warm_key(env, version)}"


class PlacementSpec(_Spec):
    """`Placement.to_dict()`."""

    regions: list[_Word] = Field(default_factory=list, max_length=256)
    clouds: list[_Word] = Field(default_factory=list, max_length=256)
    clusters: list[_Word] = Field(default_factory=list, max_length=1024)
    labels: dict[_Word, Annotated[str, StringConstraints(max_length=253)]] = Field(default_factory=dict, max_length=64)
    avoid: list[_Word] = Field(default_factory=list, max_length=1024)
    spread: Annotated[bool, Strict()] = False
    prefer_warm: Annotated[bool, Strict()] = True


_Delay = Annotated[float, Strict(), Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]


class BackoffSpec(_KeptOrder):
    """`Backoff.to_dict()`: a retry's delay, base * factor ** (failures - 1) capped, in seconds (finite: the bounds
    refuse NaN and infinity). A field the sender left out is its default."""

    base: _Delay = 1.0
    factor: _Delay = 2.0
    cap: _Delay = 60.0

    def delay(self, failures: int) -> float:
        """The wait before the retry after `failures` failures (>= 1)."""
        return min(self.cap, self.base * self.factor ** (failures - 1))


_CacheText = Annotated[str, StringConstraints(max_length=4096)]
_CacheWord = Annotated[str, StringConstraints(max_length=256)]


class CacheSpec(_KeptOrder):
    """`Cache.to_dict()` plus the version the SDK derived for it; empty: the task is not cached."""

    behavior: Literal["auto", "override", "disable"] = "auto"
    version_override: _CacheText | None = None
    ignored_inputs: list[_CacheWord] = Field(default_factory=list, max_length=256)
    salt: _CacheText = ""
    version: _CacheText = ""
    """What the cache key is made of besides the inputs: `version_override`, or a digest of the task's code."""

    @property
    def enabled(self) -> bool:
        return bool(self.model_fields_set) and self.behavior != "disable"


class TaskOverrides(WireModel):
    """What `task.override(...)` changed for one call: it wins over the deployed task's settings."""

    resources: ResourcesSpec | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    timeout_seconds: Seconds | None = None
    max_queued_seconds: Seconds | None = None
    reusable: ReusableSpec | None = None
    reusable_off: bool = False
    placement: PlacementSpec | None = None
    env_vars: dict[str, str] | None = None
    """The call's variables over the task's (a reusable task then runs in its own process: `reusable_off`)."""


def derived_env_var(key: str) -> str:
    """The environment variable a secret is handed to its task in when no name is chosen: the key upper-cased with every
    other character turned into '_' (`flyte.Secret.env_var`)."""
    derived = re.sub(r"[^A-Za-z0-9]", "_", key).upper()
    # A key such as "1password" would otherwise give a name no shell can export.
    return f"_{derived}" if derived[:1].isdigit() else derived
