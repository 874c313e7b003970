"""Pydantic models of the messages that cross process boundaries, shared by the SDK, the gateway and agents.

Values, errors, actions and runs (the same records local mode writes into a run's metadata directory and the
gateway serves), the task registry's specs, and the gateway API's requests and answers. Every model forbids
unknown fields and bounds its strings, and is validated once, at the edge that receives it.
"""

from __future__ import annotations

import base64
import traceback
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from . import errors
from ._codec import EncodedValue
from ._wire_specs import Backoff, PlacementDict, ResourcesDict, ReusableDict, Seconds


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


class CloseCode(IntEnum):
    """Why the gateway closed an agent's or worker's WebSocket (the 4000-4999 range is the application's own)."""

    REPLACED = 4000
    """A newer session of the same cluster took over: this one is fenced, its work moved or kept by the new one."""
    LEASE_EXPIRED = 4001
    """The session's lease ran out before a heartbeat renewed it: its work was moved elsewhere."""
    BAD_HELLO = 4400
    """The first message was not a valid hello."""
    UNAUTHORIZED = 4401
    """The token that opened the socket was revoked or expired since: the agent needs a new one."""
    FORBIDDEN = 4403
    """The token may not act as what the hello claims (another cluster, say)."""
    STORE_UNAVAILABLE = 4503
    """The gateway could not open the session in its store now: retry with backoff."""


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")]
"""Projects, domains, environments, runs and clusters: lower-case DNS-label-like names."""
TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}\.[A-Za-z_][A-Za-z0-9_]{0,127}$")]
"""`<environment>.<function>`."""
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
ActionName = Annotated[str, StringConstraints(pattern=r"^a(0|[0-9a-f]{20})$")]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(max_length=65_536)]
LongText = Annotated[str, StringConstraints(max_length=1_048_576)]
Payload = Annotated[str, StringConstraints(max_length=16 * 1_048_576)]
"""An inline value; the gateway answers 413 well below this for values that should have been blobs."""
Label = Annotated[str, StringConstraints(min_length=1, max_length=253)]
TraceParent = Annotated[str, StringConstraints(pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
"""A W3C trace context `traceparent` (version 00)."""
SpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]


class WireValue(WireModel):
    """One encoded value: JSON text or base64 pickle bytes inline, or a blob reference."""

    kind: Literal["json", "pickle"]
    digest: Digest
    json_text: Payload | None = None
    pickle_b64: Payload | None = None
    ref: Annotated[str, StringConstraints(max_length=2048)] | None = None

    @classmethod
    def from_encoded(cls, value: EncodedValue) -> WireValue:
        return cls.model_validate(wire_value_fields(value))

    def to_encoded(self) -> EncodedValue:
        if self.ref is not None:
            return EncodedValue(self.kind, self.digest, ref=self.ref)
        if self.json_text is not None:
            return EncodedValue("json", self.digest, payload=self.json_text.encode())
        return EncodedValue("pickle", self.digest, payload=base64.b64decode(self.pickle_b64 or ""))


def wire_value_fields(value: EncodedValue) -> dict[str, str]:
    """The JSON fields of a `WireValue`, without building the model (hot path: one per finished action)."""
    if value.payload is None:
        return {"kind": value.kind, "digest": value.digest, "ref": value.ref or ""}
    if value.kind == "json":
        return {"kind": "json", "digest": value.digest, "json_text": value.payload.decode()}
    return {"kind": "pickle", "digest": value.digest, "pickle_b64": base64.b64encode(value.payload).decode()}


class ErrorInfo(WireModel):
    """A failure as it crosses a boundary; `flyte.errors.from_parts` turns it back into an exception."""

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

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        """The record of an exception raised by a task's code (a user error) or a flyte error."""
        if isinstance(error, errors.BaseRuntimeError):
            error_type, exception_type = errors.describe(error)
            return cls(
                error_type=error_type,
                code=error.code,
                kind=error.kind,
                message=error.message[:65_536],
                exception_type=exception_type,
                traceback=_tail(error.traceback),
                worker=error.worker,
            )
        return cls(
            error_type="RuntimeUserError",
            code=type(error).__name__,
            kind="user",
            message=str(error)[:65_536],
            exception_type=f"{type(error).__module__}.{type(error).__qualname__}",
            traceback=_tail("".join(traceback.format_exception(error))),
        )

    def to_exception(self) -> errors.BaseRuntimeError:
        return errors.from_parts(
            self.error_type,
            self.code,
            self.message,
            kind=self.kind,
            exception_type=self.exception_type,
            traceback=self.traceback,
            worker=self.worker,
        )


def _tail(text: str | None, limit: int = 1_048_576) -> str | None:
    """Keep the end of an over-long traceback: the frame that raised is at the bottom."""
    return text if text is None or len(text) <= limit else text[-limit:]


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


# -- the task registry ---------------------------------------------------------------------------------------


class ParameterSpec(WireModel):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    type: Annotated[str, StringConstraints(max_length=1024)]
    required: bool = True
    default_json: Text | None = None
    """The default value as JSON, when it has one that JSON can carry."""
    kind: Literal["json", "pickle"] = "json"
    """"json" when the declared type has a JSON form: then a value for it is only ever accepted as JSON."""
    json_schema: dict[str, Any] | None = None
    """The JSON schema of the annotation, for JSON values: callers without the code check their arguments by it."""


SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
"""A secret's name in a project's secret store (`flyte.Secret.key`)."""
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class SecretRef(WireModel):
    """A secret a task needs, and how it is handed to the task: as `env_var`, and as a file under `mount`."""

    key: SecretName
    group: SecretName | None = None
    mount: Annotated[str, StringConstraints(pattern=r"^/[^\x00]{0,1023}$")] | None = None
    env_var: EnvVarName


class SecretWrite(WireModel):
    """A secret's value, written once; the API never answers it back."""

    value: Annotated[str, StringConstraints(max_length=65_536)]


class SecretInfo(WireModel):
    """A stored secret as the API shows it: its name, never its value."""

    project: Name
    name: SecretName
    updated_at: float


class SecretValues(WireModel):
    """The values of the secrets an action's task declares, for its worker only (`worker:RUN` scope)."""

    values: dict[SecretName, Annotated[str, StringConstraints(max_length=65_536)]]


class TaskSpec(WireModel):
    """One task of a deployed environment: everything an agent needs to run it, and the CLI to call it."""

    name: TaskName
    short_name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    signature: Annotated[str, StringConstraints(max_length=4096)]
    interface_digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    inputs: list[ParameterSpec] = Field(default_factory=list, max_length=256)
    output: Annotated[str, StringConstraints(max_length=1024)] = "None"
    output_kind: Literal["json", "pickle"] = "json"
    """As `ParameterSpec.kind`, for the output."""
    output_schema: dict[str, Any] | None = None
    is_async: bool = True
    resources: ResourcesDict = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=100)
    backoff: Backoff = Field(default_factory=dict)
    """base, factor and cap of the retry delay, in seconds."""
    timeout_seconds: Seconds | None = None
    max_queued_seconds: Seconds | None = None
    """`Timeout(max_queued_time=)`: an action queued longer fails (`MaxWaitExceeded`), naming why it waited."""
    cache: dict[str, Any] = Field(default_factory=dict)
    reusable: ReusableDict | None = None
    placement: PlacementDict | None = None
    queue: Name | None = None
    image: Annotated[str, StringConstraints(max_length=1024)] | None = None
    image_spec: dict[str, Any] | None = None
    """The image's build spec (`flyte.Image.to_dict()`) when it adds layers: the process backend makes a venv of its
    pip packages."""
    env_vars: dict[str, str] = Field(default_factory=dict)
    secrets: list[SecretRef] = Field(default_factory=list, max_length=64)
    max_inline_io_bytes: int = Field(default=10 * 1024 * 1024, gt=0, le=2**31)
    source_root: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """The directory the code bundle's files came from on the deploying machine: a remote attempt's traceback names
    the user's files under it, not the agent's copy. Not content: the same code deployed from another checkout is
    the same version (the first deploy's root is kept)."""

    @field_validator("secrets", mode="before")
    @classmethod
    def _bare_keys(cls, value: object) -> object:
        """A bare key (as specs deployed before secret references carried more) is that key in its own variable."""
        if not isinstance(value, list):
            return value
        from ._secret import Secret

        return [Secret(key=item).to_dict() if isinstance(item, str) else item for item in value]


class DeployRequest(WireModel):
    """Deploy one environment's tasks at one version, with their code bundle (uploaded first as a blob)."""

    project: Name
    domain: Name
    env: Name
    version: Version
    bundle_digest: Digest
    tasks: list[TaskSpec] = Field(min_length=1, max_length=1000)


class TaskVersion(WireModel):
    """A deployed, immutable task version."""

    project: Name
    domain: Name
    env: Name
    version: Version
    bundle_digest: Digest
    spec: TaskSpec
    content_digest: Digest
    """Of the spec and bundle: redeploying a version with other content is refused."""
    deployed_at: float


# -- runs and actions ----------------------------------------------------------------------------------------


class RunCreateRequest(WireModel):
    project: Name
    domain: Name
    task: TaskName
    version: Version | None = None
    """None runs the latest deployed version."""
    name: Name | None = None
    inputs: dict[str, WireValue] = Field(default_factory=dict, max_length=256)
    labels: dict[Label, Label] = Field(default_factory=dict, max_length=64)
    custom_context: dict[Label, Text] = Field(default_factory=dict, max_length=64)
    overwrite_cache: bool = False
    disable_run_cache: bool = False
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    max_wait_seconds: Annotated[float, Field(gt=0, le=365 * 86400)] | None = None
    """An action of the run queued longer than this fails (`MaxWaitExceeded`), naming why it waited."""


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


class ActionSubmitRequest(WireModel):
    """A child action, named deterministically by its parent's runtime: a resubmission answers the first."""

    name: ActionName
    parent: ActionName
    task: TaskName
    version: Version | None = None
    inputs: dict[str, WireValue] = Field(default_factory=dict, max_length=256)
    group: Annotated[str, StringConstraints(max_length=1024)] | None = None
    custom_context: dict[Label, Text] = Field(default_factory=dict, max_length=64)
    overrides: TaskOverrides | None = None
    traceparent: TraceParent | None = None
    """The submitting call's span: the child's action span hangs under it."""


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


class AbortRequest(WireModel):
    reason: Text = "aborted by the user"


class WatchMessage(WireModel):
    """One message of a watch stream: the snapshot's actions, then a marker, then changes."""

    type: Literal["snapshot", "marker", "change", "reset"]
    actions: list[ActionSummary] = Field(default_factory=list)
    revision: int
    """Resume after a reconnect by asking for changes from revision + 1."""


DEFAULT_REQUEST: dict[str, float] = {"cpu": 0.1, "memory": float(256 * 2**20)}
"""The platform's default request (0.1 CPU, 256 MiB): a worker with the SDK imported holds about 50 MiB before its
task runs, and 100m is the per-container default many Kubernetes platforms apply. See docs/operations.md."""


def _platform_default() -> dict[Literal["cpu", "memory"], float]:
    return {"cpu": DEFAULT_REQUEST["cpu"], "memory": DEFAULT_REQUEST["memory"]}


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
    connected: bool = False
    """An agent holds a live session for it now."""
    epoch: int = 0
    last_heartbeat: float | None = None


class CordonRequest(WireModel):
    """`flyte cluster cordon|drain`: no new work lands on the cluster until it is uncordoned."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    drain: bool = False
    """Also move placed work that has not started; running work finishes where it is."""


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


class TokenRequest(WireModel):
    scopes: list[Annotated[str, StringConstraints(max_length=80)]] = Field(min_length=1, max_length=16)
    projects: list[Name] = Field(default_factory=list, max_length=64)
    description: Annotated[str, StringConstraints(max_length=512)] = ""
    expires_in_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, allow_inf_nan=False)
    """The token is refused this many seconds after it is made; None: it does not expire."""


class TokenAnswer(WireModel):
    """A new token: shown in this answer and never again."""

    token: str
    scopes: list[str]
    projects: list[str]
    id: str = ""
    """What `GET /api/v1/tokens` lists it as and `DELETE /api/v1/tokens/{id}` revokes it by."""
    expires_at: float | None = None


class TokenInfo(WireModel):
    """A stored token as the API lists it: never its secret, which the gateway does not keep."""

    id: str
    """The first 16 hex digits of the token's sha256."""
    scopes: list[str]
    projects: list[str]
    """Empty: every project."""
    description: str
    created_at: float
    expires_at: float | None


# -- the web UI ------------------------------------------------------------------------------------------------


class LoginRequest(WireModel):
    """The UI's login: a bearer token, exchanged for an HttpOnly session cookie."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class LoginLink(WireModel):
    """A one-time login link: open `url` (relative to the gateway) in a browser before `expires_at`."""

    url: str
    expires_at: float


class RecordsMessage(WireModel):
    """One message of the UI's runs or clusters stream: `snapshot`s, a `marker`, then `change`s (or `reset`)."""

    type: Literal["snapshot", "marker", "change", "reset"]
    runs: list[RunSummary] = Field(default_factory=list)
    clusters: list[ClusterRecord] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    """Names of records deleted from the store."""
    revision: int


class ErrorBody(WireModel):
    """Every 4xx and 5xx answer of the API."""

    code: str
    message: str


# -- agents and workers: the long-lived connections of remote execution ----------------------------------------


class Assignment(WireModel):
    """One attempt of an action given to a cluster: everything its worker needs to run it."""

    run: Name
    action: ActionName
    parent: ActionName | None = None
    attempt: int = Field(ge=1)
    epoch: int = Field(ge=0)
    cluster: Name
    project: Name
    domain: Name
    task: TaskName
    version: Version
    bundle_digest: Digest
    inputs: dict[str, WireValue] = Field(default_factory=dict)
    custom_context: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = None
    reusable: dict[str, Any] | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)
    """Variables an `override(env_vars=...)` of this call set, over the deployed task's."""
    token: str
    """A token scoped to this run (`worker:RUN`): what the worker uses to submit children and report."""
    traceparent: TraceParent | None = None
    """The span this attempt's spans hang under (the action's, then the agent's); None: not traced."""
    source_root: str | None = None
    """Where the bundle's files came from (its task spec's `source_root`): tracebacks name files there."""


class AgentHello(WireModel):
    type: Literal["hello"] = "hello"
    cluster: ClusterRecord
    running: list[str] = Field(default_factory=list)
    """`run/action/attempt` keys the agent is still running (after a reconnect)."""


class AgentWelcome(WireModel):
    type: Literal["welcome"] = "welcome"
    epoch: int
    lease_ttl: float
    heartbeat_interval: float


class AgentHeartbeat(WireModel):
    type: Literal["heartbeat"] = "heartbeat"
    free: dict[str, float] = Field(default_factory=dict)
    running: int = 0
    warm: dict[str, int] = Field(default_factory=dict)
    """Free warm slots by `env@version`."""


class AgentEvent(WireModel):
    run: Name
    action: ActionName
    event: ActionEvent


class AgentEvents(WireModel):
    type: Literal["events"] = "events"
    events: list[AgentEvent]


class AgentLogs(WireModel):
    type: Literal["logs"] = "logs"
    run: Name
    action: ActionName
    attempt: int
    stream: Literal["stdout", "stderr"]
    text: Annotated[str, StringConstraints(max_length=1_048_576)]


class AssignMessage(WireModel):
    type: Literal["assign"] = "assign"
    assignments: list[Assignment]


class AbortMessage(WireModel):
    type: Literal["abort"] = "abort"
    keys: list[str]
    """`run/action/attempt` keys to stop."""


class StaleMessage(WireModel):
    """Sent to an agent whose session was replaced: its work was moved; it must drop what it runs."""

    type: Literal["stale"] = "stale"
    reason: str


class WireTrace(WireModel):
    kind: str
    payload_b64: Payload


class WorkerSubmit(WireModel):
    type: Literal["submit"] = "submit"
    id: int = 0
    """Echoed in the reply, so a worker can match answers to requests."""
    run: Name
    actions: list[ActionSubmitRequest] = Field(max_length=1000)


class WorkerWatch(WireModel):
    """Stream the children of `parent`: a snapshot of those that exist, then every change."""

    type: Literal["watch"] = "watch"
    id: int = 0
    """Echoed in the reply, so a worker can match answers to requests."""
    run: Name
    parent: ActionName


class WorkerReport(WireModel):
    type: Literal["report"] = "report"
    id: int = 0
    """Echoed in the reply, so a worker can match answers to requests."""
    run: Name
    action: ActionName
    event: ActionEvent
    traces: dict[str, WireTrace] = Field(default_factory=dict)
    """Trace checkpoints recorded by this attempt, made durable with (before) the result."""


class WorkerTrace(WireModel):
    """A trace checkpoint, sent as soon as it is recorded so it outlives a crash of this attempt."""

    type: Literal["trace"] = "trace"
    id: int = 0
    run: Name
    action: ActionName
    key: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    trace: WireTrace


class WorkerTraces(WireModel):
    """Ask for the trace checkpoints earlier attempts of an action recorded."""

    type: Literal["traces"] = "traces"
    id: int = 0
    """Echoed in the reply, so a worker can match answers to requests."""
    run: Name
    action: ActionName


class GatewayReply(WireModel):
    """The gateway's answer on a worker connection: children, submissions, traces, or an error."""

    type: Literal["children", "submitted", "traces", "reported", "error"]
    id: int = 0
    parent: str | None = None
    actions: list[ActionSummary] = Field(default_factory=list)
    traces: dict[str, WireTrace] = Field(default_factory=dict)
    code: str | None = None
    message: str | None = None


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
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    status: Literal["ok", "error", "unset"] = "unset"


class RunTrace(WireModel):
    """`GET /api/v1/runs/{run}/trace`: the run's spans, sorted by start."""

    run: str
    spans: list[SpanRecord]


# -- direct blob transfers (object stores) -----------------------------------------------------------------------


class BlobTransfer(WireModel):
    """`POST /api/v1/blobs/{digest}/uploads` and `GET /api/v1/blobs/{digest}/url`: a presigned URL of the object
    store for one blob, valid for `expires_in` seconds, which the caller uses with no token of ours."""

    url: str
    expires_in: int
    upload: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None
    """An upload's id, to commit it with `POST /api/v1/blobs/{digest}/uploads/{upload}` once the bytes are in."""
