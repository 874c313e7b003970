"""A worker's conversation with the gateway: submit children, watch them, report its result, keep trace checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from ._agent import Assignment
from ._api import ActionSubmitRequest
from ._base import ActionName, Name, Payload, WireModel
from ._records import ActionEvent, ActionSummary


class WireTrace(WireModel):
    kind: str
    payload_b64: Payload


WorkerToken = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
WORKER_PROTOCOL = "flyte-worker.2"
"""The worker socket's WebSocket subprotocol when both ends speak this version: a submission may then offer `room`
and be answered with children to run `here`. A worker offers it when it connects; an older gateway does not choose
it, and the worker then never sends `room` (which that gateway's models would refuse)."""


class WorkerMessage(WireModel):
    """What every worker message says besides its content."""

    id: int = 0
    """Echoed in the reply, so a worker can match answers to requests."""
    run: Name
    token: WorkerToken | None = None
    """The attempt token this message acts for. A pool worker's one socket carries the messages of every attempt it
    runs, each with its own token; without one, a message acts for the token that opened the socket."""


class WorkerSubmit(WorkerMessage):
    type: Literal["submit"] = "submit"
    actions: list[ActionSubmitRequest] = Field(max_length=1000)
    room: int = Field(default=0, ge=0, le=100_000)
    """How many of these children the sender would start itself, at once: a pool worker's free slots (sent only on
    a `WORKER_PROTOCOL` socket). The gateway may answer children placed in the sender's own pool on its own cluster
    with their assignments (`GatewayReply.here`), sparing them the hop through the agent."""


class WorkerWatch(WorkerMessage):
    """Stream the children of `parent`: a snapshot of those that exist, then each one that ends."""

    type: Literal["watch"] = "watch"
    parent: ActionName


class WorkerReport(WorkerMessage):
    type: Literal["report"] = "report"
    action: ActionName
    event: ActionEvent
    traces: dict[str, WireTrace] = Field(default_factory=dict)
    """Trace checkpoints recorded by this attempt, made durable with (before) the result."""


class WorkerTrace(WorkerMessage):
    """A trace checkpoint, sent as soon as it is recorded so it outlives a crash of this attempt."""

    type: Literal["trace"] = "trace"
    action: ActionName
    key: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    trace: WireTrace


class WorkerTraces(WorkerMessage):
    """Ask for the trace checkpoints earlier attempts of an action recorded."""

    type: Literal["traces"] = "traces"
    action: ActionName


class GatewayReply(WireModel):
    """The gateway's answer on a worker connection: children, submissions, traces, or an error."""

    type: Literal["children", "submitted", "here", "traces", "reported", "error"]
    id: int = 0
    run: str | None = None
    """With `parent`, on "children": whose children these are (one socket may watch parents of several runs)."""
    parent: str | None = None
    actions: list[ActionSummary] = Field(default_factory=list)
    traces: dict[str, WireTrace] = Field(default_factory=dict)
    here: list[Assignment] = Field(default_factory=list)
    """On "here" (sent only to a worker that offered `room`): children of its submissions it starts itself, sent as
    soon as they are written, before the submission's answer. Their agent has them too, held for this worker: the
    worker says it took each (`PoolAdopt`), or the agent runs it after `HELD_SECONDS`."""
    code: str | None = None
    message: str | None = None


FromWorker = Annotated[
    WorkerSubmit | WorkerWatch | WorkerReport | WorkerTraces | WorkerTrace, Field(discriminator="type")
]
"""What a worker sends the gateway, told apart by `type`; the gateway answers each with a `GatewayReply`."""
FROM_WORKER: TypeAdapter[FromWorker] = TypeAdapter(FromWorker)
