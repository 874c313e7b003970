"""The records of runs, actions, clusters and placements: what the store keeps, the gateway serves, and local mode
writes into a run's metadata directory; and the `run/action/attempt` key that names one attempt."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, Protocol

from pydantic import Field, StringConstraints

from ._base import Label, LongText, Name, SpanId, Text, TraceParent, WireModel
from ._specs import TaskOverrides
from ._values import WireValue


class Phase(StrEnum):
    """The action state machine: queued -> placed -> running -> succeeded | failed | aborted."""

    QUEUED = "queued"
    PLACED = "placed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


class AttemptKey(NamedTuple):
    """One attempt of one action: `run/action/attempt` as a string on the wire (an agent's running and aborted
    attempts), a backend's launch key, a pool's assignment key."""

    run: str
    action: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.run}/{self.action}/{self.attempt}"

    @classmethod
    def of(cls, item: _HasAttempt) -> AttemptKey:
        """The key of anything that names a run, an action and an attempt (an `Assignment`, say)."""
        return cls(item.run, item.action, item.attempt)

    @classmethod
    def parse(cls, key: str) -> AttemptKey:
        """The inverse of `str()`; a key that is not `run/action/N` raises ValueError."""
        run, _, rest = key.partition("/")
        action, _, number = rest.rpartition("/")
        if not run or not action or not number.isdigit():
            raise ValueError(f"not a run/action/attempt key: {key!r}")
        return cls(run, action, int(number))


class _HasAttempt(Protocol):
    @property
    def run(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def attempt(self) -> int: ...


class ErrorInfo(WireModel):
    """A failure as it crosses a boundary; `flyte.errors.error_info` makes one from an exception, `from_info` turns it
    back into one."""

    error_type: Annotated[str, StringConstraints(max_length=64)]
    """The flyte.errors class, e.g. RuntimeUserError or OOMError."""
    code: Annotated[str, StringConstraints(max_length=256)]
    """The failing exception's type name, or a platform condition."""
    kind: Literal["user", "system"]
    message: Text
    exception_type: Annotated[str, StringConstraints(max_length=512)] | None = None
    """module.QualName of the original exception, so the parent can re-raise something `except` matches."""
    traceback: LongText | None = None
    worker: Annotated[str, StringConstraints(max_length=256)] | None = None


class ActionSummary(WireModel):
    """An action as the run's metadata (local) or the gateway's store (remote) records it."""

    name: str
    parent: str | None
    task: str
    group: str | None = None
    phase: Phase
    attempts: int = 0
    cached: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    error: ErrorInfo | None = None
    output: WireValue | None = None
    """Kept for succeeded actions, so `flyte.rerun(..., recover=True)` can reuse them."""
    run: str = ""
    version: str | None = None
    inputs: dict[str, WireValue] = Field(default_factory=dict)
    custom_context: dict[str, str] = Field(default_factory=dict)
    cluster: str | None = None
    """The cluster the current attempt was placed on."""
    epoch: int = 0
    """The placing cluster session's epoch: events from an older session are refused."""
    created_at: float | None = None
    updated_at: float | None = None
    revision: int = 0
    """The store revision this record was read at (set by the gateway; 0 locally)."""
    user_failures: int = 0
    system_failures: int = 0
    not_before: float | None = None
    """A retry waits in the queue until then (its backoff)."""
    cache_key: str | None = None
    """Set when the task is cached: its result is stored under this key when it succeeds."""
    overrides: TaskOverrides | None = None
    waiting: Text | None = None
    """Why a queued action is not placed yet (placement's reason), e.g. every cluster busy or cordoned."""
    traceparent: TraceParent | None = None
    """The W3C traceparent of this action's span: every attempt, on any cluster, continues this trace."""
    span_parent: SpanId | None = None
    """The span this action's span hangs under: the parent's call span, or the run's span for the root."""


class RunSummary(WireModel):
    """A run as its metadata directory (local) or the gateway (remote) records it."""

    name: str
    """The run's identity across the federation: what URLs, tokens and records name it by."""
    task: str
    phase: Phase
    project: str
    domain: str
    created_at: float
    ended_at: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, WireValue] = Field(default_factory=dict)
    output: WireValue | None = None
    error: ErrorInfo | None = None
    action_count: int = 0
    """Actions created in the run, the root included: a quarter second behind while it runs, exact once it ends."""
    version: str | None = None
    custom_context: dict[str, str] = Field(default_factory=dict)
    overwrite_cache: bool = False
    disable_run_cache: bool = False
    idempotency_key: str | None = None
    request_digest: str | None = None
    """A digest of the create request: the same idempotency key with another body is refused (409)."""
    abort_reason: str | None = None
    max_wait_seconds: float | None = None
    """An action of the run queued longer than this fails (`MaxWaitExceeded`)."""

    display_name: str | None = None
    """The name the run was created with, when the caller chose one: unique within its project and domain (another
    project may choose the same), so the gateway keeps it under an identity (`name`) derived from all three."""

    @property
    def shown_name(self) -> str:
        """The name to show a user: the chosen one, else the identity."""
        return self.display_name or self.name


class ActionEvent(WireModel):
    """A state change reported for one attempt of an action (by an agent, a worker, or the scheduler)."""

    phase: Phase
    attempt: int = Field(ge=1)
    cluster: Name | None = None
    epoch: int = Field(default=0, ge=0)
    output: WireValue | None = None
    error: ErrorInfo | None = None
    at: float | None = Field(default=None, ge=0)
    """When it happened, by the reporter's clock (seconds since the epoch)."""
    started_at: float | None = Field(default=None, ge=0)
    """When the attempt started, by the worker's clock: a result carries it, because the agent's `running` may come
    after the worker's own result (a warm pool worker reports at once, its agent's events go in batches); a late
    `running` then changes nothing (an ended record never changes)."""


DEFAULT_REQUEST: dict[str, float] = {"cpu": 0.1, "memory": float(256 * 2**20)}
"""The platform's default request (0.1 CPU, 256 MiB): a worker with the SDK imported holds about 50 MiB before its
task runs, and 100m is the per-container default many Kubernetes platforms apply. See docs/operations.md."""


def _platform_default() -> dict[Literal["cpu", "memory"], float]:
    return {"cpu": DEFAULT_REQUEST["cpu"], "memory": DEFAULT_REQUEST["memory"]}


StoreUrl = Annotated[str, StringConstraints(pattern=r"^(s3|gs|az)://[a-z0-9][a-z0-9._-]{1,62}(/[A-Za-z0-9._/-]*)?$")]
"""An object store's bucket and prefix."""


class ClusterRecord(WireModel):
    """A cluster as its agent registers it (next issue) and the gateway shows it."""

    name: Name
    region: Name
    cloud: Name
    labels: dict[Label, Label] = Field(default_factory=dict)
    capacity: dict[str, float] = Field(default_factory=dict)
    free: dict[str, float] = Field(default_factory=dict)
    healthy: bool = True
    cordoned: bool = False
    cordon_reason: Text | None = None
    draining: bool = False
    """Cordoned, and its placed work that has not started moves elsewhere."""
    warm: dict[Label, int] = Field(default_factory=dict)
    """Free warm-pool slots per `env@version`, as the agent last reported them."""
    cost_per_cpu_hour: float = Field(default=0.0, ge=0)
    cost_per_gpu_hour: float = Field(default=0.0, ge=0)
    default_request: dict[Literal["cpu", "memory"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=_platform_default
    )
    """What a one-off action that declares no request for a resource is counted as holding here (`flyte agent
    serve --default-cpu/--default-memory`): the gateway reserves it and the agent admits by it, so a fan-out of
    tasks with no declared resources cannot start more processes than the cluster has room for."""
    blobs: StoreUrl | None = None
    """The object store this cluster keeps its data in (`flyte agent serve --blobs s3://BUCKET/PREFIX`): its
    workers write new blobs there and read them from there first. None: the gateway's own store."""
    blobs_endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+/?$")] | None = None
    """That store's endpoint (an S3-compatible server), where the usual environment does not name it."""
    connected: bool = False
    """An agent holds a live session for it now."""
    epoch: int = 0
    last_heartbeat: float | None = None


class CordonRecord(WireModel):
    reason: Annotated[str, StringConstraints(max_length=512)]
    drain: bool = False
    at: float


class PolicyDocument(WireModel):
    """A placement policy file (YAML), as `flyte policy apply` sends it and the gateway keeps it."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=262_144)]
    version: Annotated[str, StringConstraints(max_length=256)] = ""
    """Set by the gateway from the document's `version`."""
    applied_at: float | None = None


class PlacementRecord(WireModel):
    """One placement decision, with what it saw: replayable by `flyte policy simulate`, shown by `get placement`."""

    run: Name
    action: Annotated[str, StringConstraints(max_length=256)]
    attempt: int
    decided_at: float
    policy_version: str
    cluster: str | None
    never_fits: bool = False
    reason: Text
    tier: str | None = None
    verdicts: dict[str, str] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)
    demand: dict[str, Any] = Field(default_factory=dict)
    """The `policies.Demand` as a mapping."""
    snapshots: list[dict[str, Any]] = Field(default_factory=list)
    """The `policies.ClusterSnapshot` of every cluster considered (omitted past a size bound)."""
    term: int | None = None
    """The term of the leader replica that decided it (`gateway._leader`): its writes hold only within it."""


# -- tracing ------------------------------------------------------------------------------------------------------


class SpanRecord(WireModel):
    """One OpenTelemetry span of a run, as the gateway keeps and serves it."""

    trace_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    span_id: SpanId
    parent_span_id: SpanId | None = None
    name: Annotated[str, StringConstraints(max_length=1024)]
    start_ns: int
    end_ns: int
    service: Annotated[str, StringConstraints(max_length=256)]
    cluster: Annotated[str, StringConstraints(max_length=256)] | None = None
    # bool first: pydantic before 2.8 wrote `true` in this union as 1.0 (the first member whose type it is).
    attributes: dict[str, bool | int | float | str] = Field(default_factory=dict)
    status: Literal["ok", "error", "unset"] = "unset"


class RunTrace(WireModel):
    """`GET /api/v1/runs/{run}/trace`: the run's spans, sorted by start."""

    run: str
    spans: list[SpanRecord]
