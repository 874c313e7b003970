"""`flyte run deployed-task NAME[:VERSION] [--param value ...]`: run a task from the registry, as Flyte 2 does.

The task's parameters come from its deployed spec, not from code: a value is JSON when it parses as JSON (numbers,
lists, objects, `true`), else the text itself; a boolean parameter given alone is true. The spec's JSON schemas
then check every value before the run is created, with the message naming the parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import flyte.remote
from flyte._remote_task import RemoteInterface, RemoteParameter, RemoteTask

from ._errors import CliError, CliUsageError

DEPLOYED_TASK = "deployed-task"
"""The word in FILE's place that names a deployed task instead of a file (Flyte 2's spelling)."""


def resolve_deployed(reference: str) -> RemoteTask:
    """`env.task` or `env.task:version` from the registry; a clear usage error when it is not there."""
    name, _, version = reference.partition(":")
    if "." not in name:
        raise CliUsageError(f"deployed-task {reference!r}: name the task as ENV.TASK or ENV.TASK:VERSION")
    try:
        return flyte.remote.Task.get(name, version=version or None).deployed()
    except flyte.errors.RemoteTaskNotFoundError as error:
        raise CliError(error.message) from None


def deployed_help(task: RemoteTask) -> str:
    interface = task.interface
    lines = [
        "Usage: flyte run deployed-task NAME[:VERSION] [--PARAM VALUE]...",
        "",
        f"  {task.name} version {task.version}: {interface.signature_text}",
    ]
    if interface.parameters:
        lines += ["", "Parameters (JSON, or plain text for strings):"]
    for p in interface.parameters:
        lines.append(f"  --{p.name:<26} {_schema_name(p)} ({'required' if p.required else 'optional'})")
    return "\n".join(lines)


def parse_deployed_args(interface: RemoteInterface, tokens: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    spellings = {s: p for p in interface.parameters for s in {p.name, p.name.replace("_", "-")}}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--") or len(token) == 2:
            raise _usage(interface, f"unexpected argument {token!r}: give parameters as --param value")
        key, has_inline, inline = token[2:].partition("=")
        p = spellings.get(key)
        if p is None:
            known = ", ".join(f"--{name}" for name in interface.by_name) or "none"
            raise _usage(interface, f"no parameter --{key}; the task's parameters are {known}")
        if p.name in values:
            raise _usage(interface, f"parameter --{key} is given more than once")
        if has_inline:
            text = inline
        elif i < len(tokens) and not tokens[i].startswith("--"):
            text = tokens[i]
            i += 1
        elif _schema_name(p) == "boolean":
            values[p.name] = True
            continue
        else:
            raise _usage(interface, f"parameter --{key} needs a value")
        values[p.name] = _value(p, text)
    return values


def _value(p: RemoteParameter, text: str) -> Any:
    if _schema_name(p) == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _schema_name(p: RemoteParameter) -> str:
    from flyte._schema import describe

    return describe(p.codec.schema) if p.codec.schema is not None else "a pickled value"


def _usage(interface: RemoteInterface, what: str) -> CliUsageError:
    return CliUsageError(f"{what}; usage: {interface.signature_text}")
