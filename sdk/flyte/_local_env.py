"""Per-task environment variables in local mode, where every action shares one process and one `os.environ`.

A remote attempt gets its own process, so its `env_vars` are simply its environment. Locally a sync body runs in a
thread and an async body is a coroutine on the shared loop: `os.environ` cannot differ per action. So the gate lets
only actions that want the same overlay run at a time. The first holder applies its overlay (remembering what it
replaced); more holders with the same overlay join it; an action that wants another overlay waits until the last
holder has left and the previous values are restored. An action waiting for its children lets go of the gate
meanwhile (its own code is not running then), so a parent never blocks a child whose variables differ; it takes
the gate again before it continues. Runs whose tasks share their variables (the usual case) never wait.

The alternative, a subprocess per attempt whose variables differ, would need each action's inputs, outputs, traces
and children to cross a process boundary in local mode too; the gate keeps local runs in one debuggable process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

__all__ = ["EnvGate"]


class EnvGate:
    """Admits actions to run under an environment overlay, one distinct overlay at a time."""

    def __init__(self) -> None:
        self._applied: tuple[tuple[str, str], ...] | None = None
        self._saved: dict[str, str | None] = {}
        self._holders = 0
        self._changed = asyncio.Condition()

    async def enter(self, overlay: Mapping[str, str]) -> None:
        """Wait until `overlay` may be in `os.environ` (alongside only holders of the same overlay), and hold it."""
        wanted = tuple(sorted(overlay.items()))
        async with self._changed:
            await self._changed.wait_for(lambda: self._holders == 0 or self._applied == wanted)
            if self._holders == 0:
                self._apply(wanted)
            self._holders += 1

    async def leave(self) -> None:
        """Give up a hold; the last holder restores what the overlay replaced and lets other overlays in."""
        async with self._changed:
            self._holders -= 1
            if self._holders == 0:
                self._restore()
                self._changed.notify_all()

    def _apply(self, wanted: tuple[tuple[str, str], ...]) -> None:
        self._applied = wanted
        self._saved = {key: os.environ.get(key) for key, _ in wanted}
        os.environ.update(dict(wanted))

    def _restore(self) -> None:
        for key, previous in self._saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._applied, self._saved = None, {}
