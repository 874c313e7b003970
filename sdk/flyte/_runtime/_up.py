"""A one-off worker tells its agent when its start-up is over, so the agent can pace how many start at once."""

from __future__ import annotations

import contextlib
import os
import socket

from .._wire import WorkerUp

UP_SOCKET_ENV = "FLYTE_AGENT_UP_SOCKET"
"""The agent's local socket a worker says `{"up": pid}` on once the interpreter and the SDK are loaded."""


def say_up() -> None:
    """Best effort: an agent that does not hear it frees the start slot when the process ends instead."""
    path = os.environ.get(UP_SOCKET_ENV)
    if not path:
        return
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
        link.settimeout(1.0)
        link.connect(path)
        link.sendall(WorkerUp(up=os.getpid()).model_dump_json().encode() + b"\n")
