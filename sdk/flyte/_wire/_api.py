"""The gateway's HTTP API: the bodies of requests and answers (the task registry, runs, secrets, tokens, the UI)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, StringConstraints, field_validator, model_serializer

from ._base import ActionName, Digest, Label, Name, TaskName, Text, TraceParent, Version, WireModel
from ._records import ActionSummary, ClusterRecord, RunSummary
from ._schedules import NotificationRule, TriggerSpec
from ._specs import (
    BackoffSpec,
    CacheSpec,
    PlacementSpec,
    ResourcesSpec,
    ReusableSpec,
    Seconds,
    TaskOverrides,
    derived_env_var,
)
from ._values import WireValue

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
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    retries: int = Field(default=0, ge=0, le=100)
    backoff: BackoffSpec = Field(default_factory=BackoffSpec)
    timeout_seconds: Seconds | None = None
    max_queued_seconds: Seconds | None = None
    """`Timeout(max_queued_time=)`: an action queued longer fails (`MaxWaitExceeded`), naming why it waited."""
    cache: CacheSpec = Field(default_factory=CacheSpec)
    reusable: ReusableSpec | None = None
    placement: PlacementSpec | None = None
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
    triggers: list[TriggerSpec] = Field(default_factory=list, max_length=16)
    """`@env.task(triggers=...)`: schedules the gateway runs this task by, while this is the latest version."""

    @model_serializer(mode="wrap")
    def _without_empty_triggers(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A task without triggers writes what it wrote before triggers existed: its version digest is unchanged.
        data: dict[str, Any] = handler(self)
        if not data.get("triggers"):
            data.pop("triggers", None)
        return data

    @field_validator("secrets", mode="before")
    @classmethod
    def _bare_keys(cls, value: object) -> object:
        """A bare key (as specs deployed before secret references carried more) is that key in its own variable."""
        if not isinstance(value, list):
            return value
        return [_bare_key(item) if isinstance(item, str) else item for item in value]

    @cached_property
    def parameters(self) -> dict[str, ParameterSpec]:
        """The inputs by name (kept with the spec: every submission of the task looks its inputs up)."""
        return {p.name: p for p in self.inputs}

    @cached_property
    def required_inputs(self) -> frozenset[str]:
        return frozenset(p.name for p in self.inputs if p.required)


def _bare_key(key: str) -> dict[str, str | None]:
    return {"key": key, "group": None, "mount": None, "env_var": derived_env_var(key)}


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
    notifications: list[NotificationRule] = Field(default_factory=list, max_length=16)
    """Sent by the gateway when the run ends (`with_runcontext(notifications=)`); kept apart from the run's record,
    which any reader of the project sees, because webhook URLs are secrets."""


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


class AbortRequest(WireModel):
    reason: Text = "aborted by the user"


class WatchMessage(WireModel):
    """One message of a watch stream: the snapshot's actions, then a marker, then changes."""

    type: Literal["snapshot", "marker", "change", "reset"]
    actions: list[ActionSummary] = Field(default_factory=list)
    revision: int
    """Resume after a reconnect by asking for changes from revision + 1."""


class CordonRequest(WireModel):
    """`flyte cluster cordon|drain`: no new work lands on the cluster until it is uncordoned."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    drain: bool = False
    """Also move placed work that has not started; running work finishes where it is."""


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


class BlobTransfer(WireModel):
    """`POST /api/v1/blobs/{digest}/uploads` and `GET /api/v1/blobs/{digest}/url`: a presigned URL of the object
    store for one blob, valid for `expires_in` seconds, which the caller uses with no token of ours."""

    url: str
    expires_in: int
    upload: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None
    """An upload's id, to commit it with `POST /api/v1/blobs/{digest}/uploads/{upload}` once the bytes are in."""
    store: str | None = None
    """The object store the URL points at (`s3://BUCKET/PREFIX`), for the trace: a read from another cluster's store
    crosses regions."""
    remote: bool = False
    """A download from a store that is not the calling cluster's own: the bytes cross regions."""
    multipart: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """A multipart upload's id in the store (`?parts=N`): the client sends the parts to `parts`' URLs, then commits
    with `?multipart=` this id."""
    parts: dict[int, str] = Field(default_factory=dict)
    """Part number -> a presigned PUT URL, for the parts still to send (every part 5 MiB or more but the last)."""
    done: list[int] = Field(default_factory=list)
    """The parts the store already holds (resuming a broken upload: `POST .../uploads/{upload}/parts`)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers the PUT to `url` must carry: the sha256 the URL is signed with, which the store checks the bytes
    against (a part's URL is signed with the part's, from `PartChecksums`: its PUT carries `x-amz-checksum-sha256`
    with that value)."""


CHECKSUM_HEADER = "x-amz-checksum-sha256"
"""The header that carries a sha256 (base64) the object store checks a PUT's bytes against: a direct upload's URL,
and each part's, is signed with it, so the PUT must carry it as signed."""

_SHA256_BASE64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]


class PartChecksums(WireModel):
    """The body of `POST /api/v1/blobs/{digest}/uploads?parts=N` (and of resuming one): each part's sha256, in
    base64, in order. Each part's URL is signed with its checksum, so the store takes only those bytes for it."""

    sha256: list[_SHA256_BASE64] = Field(default_factory=list, max_length=10_000)
