"""The agent's local sockets to the workers it keeps ready: a reusable environment's pool workers, and spares.

JSON lines, one message each. They are told apart by the key each carries, not by a `type` field: a pool worker
runs the SDK of its environment's image, which may be older than the agent's, so the shapes stay as they were.

- pool socket, worker -> agent: `PoolHello` first, then `PoolLog`, `PoolAdopt`, `PoolFinished` and `PoolDone`
  (`FROM_POOL_WORKER`);
- pool socket, agent -> worker: an `Assignment` or a `PoolAbort` (`TO_POOL_WORKER`);
- spare socket, worker -> agent: a spare's `SpareHello`, or a one-off worker's `WorkerUp` (`ON_SPARE_SOCKET`);
- spare socket, agent -> spare: one `SpareAssign`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter

from ._agent import Assignment
from ._base import WireModel

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, ...] = ("stdout", "stderr")


class PoolHello(WireModel):
    """A pool worker's first line: its process, its name (`FLYTE_POOL_WORKER`) and the pool's secret."""

    hello: int
    worker: str | None = None
    secret: str | None = None


class PoolLog(WireModel):
    """What an attempt printed or logged. Not bounded: a local socket from the agent's own workers, and a cut
    would lose the user's output."""

    log: str
    """The attempt's key (`AttemptKey`)."""
    stream: Stream
    text: str = ""


class PoolDone(WireModel):
    """The worker has reported the attempt's result to the gateway."""

    done: str
    """The attempt's key (`AttemptKey`)."""
    reported: int | None = None
    """When it reported (ns since the epoch): the agent ends the attempt's span there."""


FINISHED_NOTICE_SECONDS = 0.1
"""How long a pool worker's report of a result may go unanswered before the worker tells its agent the attempt
finished (`PoolFinished`): half the agent's `RUNNING_AFTER`. A result the gateway takes sooner, as in a quiet chain of
calls, needs no line at all."""


class PoolFinished(WireModel):
    """The attempt's task has ended and the worker is reporting its result to the gateway (its `PoolDone` follows
    once the gateway has it), which has not answered within `FINISHED_NOTICE_SECONDS`. The
    agent then never reports it `running`: its result is on its way, and a `running` record would cost a busy gateway
    a write for a phase already over. An older agent does not know this line: it logs it as unreadable and skips it
    (and may then report `running` for an attempt whose result waits for the gateway, as before)."""

    finished: str
    """The attempt's key (`AttemptKey`)."""


class PoolAdopt(WireModel):
    """The worker starts this attempt itself: the gateway gave it in answer to the worker's own submission (a child
    in the worker's pool, `GatewayReply.here`). The agent counts it as the worker's, as if it had sent it there. An
    older agent does not know this line and skips it (it then runs its held copy after `HELD_SECONDS`)."""

    adopt: str
    """The attempt's key (`AttemptKey`)."""


class PoolAbort(WireModel):
    """Stop one attempt (cancel its task in the worker)."""

    abort: str
    """The attempt's key (`AttemptKey`)."""


class SpareHello(WireModel):
    """A spare's first line: its process, ready for one assignment."""

    hello: int


class WorkerUp(WireModel):
    """A one-off worker's only line: its interpreter and the SDK are loaded (the agent paces start-ups by it)."""

    up: int


class SpareAssign(WireModel):
    """The one attempt a spare runs; it sets `env` (the task's variables) before it loads any user code."""

    assignment: Assignment
    bundle: str
    env: dict[str, str] = Field(default_factory=dict)


def _by_key(*keys: str, otherwise: str | None = None) -> Callable[[dict[str, object] | WireModel], str | None]:
    """The tag of a message: the first of `keys` it carries (as a mapping when parsed, an attribute when sent)."""

    def tag(value: dict[str, object] | WireModel) -> str | None:
        carried = value.keys() if isinstance(value, dict) else type(value).model_fields.keys()
        return next((key for key in keys if key in carried), otherwise)

    return tag


FromPoolWorker = Annotated[
    Annotated[PoolLog, Tag("log")]
    | Annotated[PoolAdopt, Tag("adopt")]
    | Annotated[PoolFinished, Tag("finished")]
    | Annotated[PoolDone, Tag("done")],
    Discriminator(_by_key("log", "adopt", "finished", "done")),
]
ToPoolWorker = Annotated[
    Annotated[PoolAbort, Tag("abort")] | Annotated[Assignment, Tag("assignment")],
    Discriminator(_by_key("abort", otherwise="assignment")),
]
OnSpareSocket = Annotated[
    Annotated[WorkerUp, Tag("up")] | Annotated[SpareHello, Tag("hello")], Discriminator(_by_key("up", "hello"))
]
FROM_POOL_WORKER: TypeAdapter[FromPoolWorker] = TypeAdapter(FromPoolWorker)
TO_POOL_WORKER: TypeAdapter[ToPoolWorker] = TypeAdapter(ToPoolWorker)
ON_SPARE_SOCKET: TypeAdapter[OnSpareSocket] = TypeAdapter(OnSpareSocket)
