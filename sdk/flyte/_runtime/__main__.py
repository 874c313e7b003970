"""`python -m flyte._runtime`: run one assignment, or serve a warm pool (`--pool`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .._wire import Assignment
from ._worker import configure, run_assignment


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m flyte._runtime")
    parser.add_argument("--assignment", type=Path, help="A JSON Assignment to run once.")
    parser.add_argument("--bundle", type=Path, help="The extracted code bundle.")
    parser.add_argument("--spare", type=Path, help="Wait at this socket for one assignment (a pre-started worker).")
    parser.add_argument("--pool", type=Path, help="Serve assignments from the agent's socket at this path.")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    endpoint = os.environ["FLYTE_ENDPOINT"]
    if args.spare is not None:
        from ._spare import serve_once

        asyncio.run(serve_once(args.spare, endpoint))
        return 0
    if args.bundle is None:
        parser.error("--bundle is required with --assignment or --pool")
    if args.pool is not None:
        from ._pool import serve_pool

        asyncio.run(serve_pool(args.pool, args.bundle, endpoint, args.concurrency))
        return 0
    assignment = Assignment.model_validate_json(args.assignment.read_text())
    configure(assignment, endpoint)
    asyncio.run(run_assignment(assignment, args.bundle, endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
