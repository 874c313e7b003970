"""Every Python call of one part of the rig, counted: `bench/calls.py` puts this folder on the rig's `PYTHONPATH`,
so every process of the rig imports it at start-up, and the processes of the part it names
(`$FLYTE_BENCH_CALLS_PART`: gateway, agent or worker) profile their main thread with `cProfile` from then on.

Each writes `$FLYTE_BENCH_CALLS_DIR/<part>-<pid>.prof` when it exits, or when it is sent SIGTERM (how the agent
stops its workers). A bench tool, not part of the product: nothing imports it otherwise."""

from __future__ import annotations

import atexit
import cProfile
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def _part(argv: list[str]) -> str | None:
    """Which part of the rig this process is, from how it was started."""
    if "flyte._runtime" in argv:
        return "worker"
    if "serve" in argv:
        for part in ("gateway", "agent"):
            if part in argv:
                return part
    return None


def _install(folder: Path) -> None:
    profile = cProfile.Profile()
    written: list[Path] = []

    def write() -> None:
        if written:
            return
        profile.disable()
        path = folder / f"{os.environ['FLYTE_BENCH_CALLS_PART']}-{os.getpid()}.prof"
        profile.dump_stats(path)
        written.append(path)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        write()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    atexit.register(write)
    signal.signal(signal.SIGTERM, on_sigterm)
    profile.enable()


if os.environ.get("FLYTE_BENCH_CALLS_DIR") and _part(sys.orig_argv) == os.environ.get("FLYTE_BENCH_CALLS_PART"):
    _install(Path(os.environ["FLYTE_BENCH_CALLS_DIR"]))
