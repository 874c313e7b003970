"""Flyte 2 names that Flyte Federation does not implement yet.

Each is importable, so a Flyte 2 program loads; using one (calling it, or constructing it) raises a
`NotImplementedError` that says what is missing and where it is tracked, never an `AttributeError` at import.
docs/flyte2-parity.md lists every Flyte 2 name and its status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["missing_class", "missing_function", "not_implemented"]

ISSUE = "issue 20 (Flyte 2 API parity); see docs/flyte2-parity.md"


def not_implemented(name: str, what: str) -> NotImplementedError:
    """The error every missing name raises: the name, what it would need, and where that is tracked."""
    return NotImplementedError(f"{name} is not implemented in Flyte Federation yet: {what} ({ISSUE})")


def missing_function(name: str, what: str) -> Callable[..., NoReturn]:
    """A function of that name that raises `not_implemented` when called (and from `.aio`)."""

    def missing(*args: Any, **kwargs: Any) -> NoReturn:
        raise not_implemented(name, what)

    async def aio(*args: Any, **kwargs: Any) -> NoReturn:
        raise not_implemented(name, what)

    missing.__name__ = missing.__qualname__ = name.rpartition(".")[2]
    missing.__doc__ = f"Not implemented yet: {what}."
    missing.aio = aio  # type: ignore[attr-defined]
    return missing


def missing_class(name: str, what: str) -> type[Any]:
    """A class of that name whose construction raises `not_implemented`; `isinstance` and annotations still work."""

    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        raise not_implemented(name, what)

    short = name.rpartition(".")[2]
    return type(short, (), {"__init__": __init__, "__doc__": f"Not implemented yet: {what}.", "__module__": "flyte"})


_APPS = "serving apps (AppEnvironment)"

OnArtifact = missing_class("flyte.OnArtifact", "artifact-triggered runs (no artifact service)")
TriggeredArtifact = missing_class("flyte.TriggeredArtifact", "artifact-triggered runs (no artifact service)")
TriggeredPartition = missing_class("flyte.TriggeredPartition", "artifact-triggered runs (no artifact service)")
serve = missing_function("flyte.serve", _APPS)
with_servecontext = missing_function("flyte.with_servecontext", _APPS)
AppHandle = missing_class("flyte.AppHandle", _APPS)
Checkpoint = missing_class("flyte.Checkpoint", "file checkpoints of a task's working state across attempts")
BaseCheckpoint = missing_class("flyte.BaseCheckpoint", "file checkpoints of a task's working state across attempts")
latest_checkpoint = missing_function("flyte.latest_checkpoint", "file checkpoints across attempts")
ImageBuild = missing_class("flyte.ImageBuild", "remote image builds (flyte.build returns the tag it built)")
init_passthrough = missing_function("flyte.init_passthrough", "passthrough authentication (use init(api_key=))")
load_interactive_ctx = missing_function("flyte.load_interactive_ctx", "interactive (notebook) run contexts")
load_plugin_config = missing_function("flyte.load_plugin_config", "plugin configuration entry points")
run_python_script = missing_function("flyte.run_python_script", "running a whole script as a task")
Documentation = missing_class("flyte.Documentation", "task documentation objects (use the docstring)")
Link = missing_class("flyte.Link", "custom UI links on actions")
