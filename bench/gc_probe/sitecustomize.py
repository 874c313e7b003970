"""Time spent in the cycle collector, per process: `bench/vs_ray.py --gc` puts this folder on the rig's
`PYTHONPATH`, so every Python process of the rig (gateway, agent, workers) imports it at start-up.

Each process writes its totals to `$FLYTE_BENCH_GC_DIR/<pid>.json` every half second: seconds and collections per
generation, from `gc.callbacks`. A bench tool, not part of the product: nothing imports it otherwise."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any


def _install(folder: Path) -> None:
    totals: dict[str, Any] = {"seconds": [0.0, 0.0, 0.0], "collections": [0, 0, 0]}
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = info["generation"]
        totals["seconds"][generation] += time.perf_counter() - started[0]
        totals["collections"][generation] += 1

    def write_forever() -> None:
        path = folder / f"{os.getpid()}.json"
        while True:
            time.sleep(0.5)
            try:
                path.write_text(json.dumps(totals))
            except OSError:
                return

    gc.callbacks.append(timed)
    threading.Thread(target=write_forever, name="gc-probe", daemon=True).start()


if os.environ.get("FLYTE_BENCH_GC_DIR"):
    _install(Path(os.environ["FLYTE_BENCH_GC_DIR"]))
