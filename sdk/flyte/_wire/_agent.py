"""The agent's conversation with the gateway: one WebSocket per cluster session (hello, welcome, assignments,
heartbeats, events, logs, aborts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from ._base import ActionName, Digest, Name, TaskName, TraceParent, Version, WireModel
from ._records import ActionEvent, ClusterRecord
from ._specs import ResourcesSpec, ReusableSpec, pool_key
from ._values import WireValue


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
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    timeout_seconds: float | None = None
    reusable: ReusableSpec | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)
    """Variables an `override(env_vars=...)` of this call set, over the deployed task's."""
    token: str
    """A token scoped to this run (`worker:RUN`): what the worker uses to submit children and report."""
    traceparent: TraceParent | None = None
    """The span this attempt's spans hang under (the action's, then the agent's); None: not traced."""
    source_root: str | None = None
    """Where the bundle's files came from (its task spec's `source_root`): tracebacks name files there."""

    @property
    def env(self) -> str:
        """The environment of its task (`<environment>.<function>`)."""
        return self.task.rpartition(".")[0]

    @property
    def pool_key(self) -> str:
        """The reusable pool this attempt runs in, when `reusable` is set (see `pool_key`)."""
        return pool_key(self.project, self.domain, self.env, self.version)


class AgentHello(WireModel):
    type: Literal["hello"] = "hello"
    cluster: ClusterRecord
    running: list[str] = Field(default_factory=list)
    """`run/action/attempt` keys the agent is still running (after a reconnect)."""
    reporting: list[str] = Field(default_factory=list)
    """Keys of attempts that have ended whose result the agent has yet to deliver (its outbox holds it): the new
    session keeps them as they are instead of failing them as lost."""


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
    """Free warm slots by pool (`pool_key`: project/domain/env@version), as placement's warm scorer looks them up."""


class AgentEvent(WireModel):
    run: Name
    action: ActionName
    event: ActionEvent
    seq: int = Field(ge=1)
    """Its place in the agent incarnation's outbox: 1, 2, 3, ... in the order the agent made them."""


class AgentEvents(WireModel):
    """A batch from the agent's outbox (`agent._outbox`): sent until acknowledged, so the gateway may see an event
    more than once and applies it once."""

    type: Literal["events"] = "events"
    incarnation: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]
    """The agent process that made them: its sequence numbers start at 1 again when it restarts."""
    since: int = Field(ge=1)
    """Every event of this incarnation before `since` was acknowledged or given up by the agent: none will come."""
    events: list[AgentEvent] = Field(max_length=1000)


class EventsAck(WireModel):
    """The gateway to an agent: every event of `incarnation` up to `upto` is durably applied (or refused for good,
    as stale); the agent forgets them. Sent after each `AgentEvents` batch."""

    type: Literal["events_ack"] = "events_ack"
    incarnation: str
    upto: int = Field(ge=0)


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
    held: list[str] = Field(default_factory=list)
    """Keys (`run/action/attempt`) of those given to the pool worker that submitted them as well (`GatewayReply.here`):
    the agent waits up to `HELD_SECONDS` for that worker to say it took one (`PoolAdopt`) before it runs it itself."""


HELD_SECONDS = 5.0
"""How long an agent holds an assignment for the pool worker it was also given to: past it, the agent runs it on its
pool as any other (the worker died, or never had the answer), and a late `PoolAdopt` is told to abort its copy."""


class AbortMessage(WireModel):
    type: Literal["abort"] = "abort"
    keys: list[str]
    """`run/action/attempt` keys to stop."""


class StaleMessage(WireModel):
    """Sent to an agent whose session was replaced: its work was moved; it must drop what it runs."""

    type: Literal["stale"] = "stale"
    reason: str


FromAgent = Annotated[AgentHeartbeat | AgentEvents | AgentLogs, Field(discriminator="type")]
"""What an agent sends after its hello, told apart by `type`."""
ToAgent = Annotated[AssignMessage | AbortMessage | StaleMessage | EventsAck, Field(discriminator="type")]
"""What the gateway sends an agent after its welcome, told apart by `type`."""
FROM_AGENT: TypeAdapter[FromAgent] = TypeAdapter(FromAgent)
TO_AGENT: TypeAdapter[ToAgent] = TypeAdapter(ToAgent)
