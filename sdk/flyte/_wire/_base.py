"""What every wire module shares: the base model, the bounded string types, and the WebSocket close codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class CloseCode(IntEnum):
    """Why the gateway closed a WebSocket (the 4000-4999 range is the application's own)."""

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
    """The gateway could not serve the socket from its store now (open a session, follow a watch): retry with backoff
    (a watch resumes from its last revision)."""


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
