"""`python -m flyte._runtime`: run one assignment, or serve a warm pool (`--pool`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .. import _otel
from .._wire import Assignment
from ._bundle import fetch_bundle
from ._up import say_up
from ._worker import configure, run_assignment


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m flyte._runtime")
    parser.add_argument(
        "--assignment", type=Path, help="A JSON Assignment to run once (default: $FLYTE_ASSIGNMENT, as in a pod)."
    )
    parser.add_argument("--bundle", type=Path, help="The extracted code bundle (default: fetched from the gateway).")
    parser.add_argument("--spare", type=Path, help="Wait at this socket for one assignment (a pre-started worker).")
    parser.add_argument(
        "--pool", help="Serve assignments from the agent's pool socket: a Unix socket's path, or tcp://HOST:PORT."
    )
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    endpoint = os.environ["FLYTE_ENDPOINT"]
    if args.spare is not None:
        from ._spare import serve_once

        asyncio.run(serve_once(args.spare, endpoint))
        return 0
    if args.pool is not None:
        from ._pool import serve_pool

        asyncio.run(serve_pool(args.pool, args.bundle, endpoint, args.concurrency))
        return 0
    # A pod cannot read the agent's files: its agent passes the assignment (which holds the run token) through a
    # Secret into the environment, and the worker fetches the bundle from the gateway with that token.
    say_up()
    text = args.assignment.read_text() if args.assignment is not None else os.environ["FLYTE_ASSIGNMENT"]
    assignment = Assignment.model_validate_json(text)
    bundle = args.bundle or fetch_bundle(endpoint, assignment.token, assignment.bundle_digest)
    configure(assignment, endpoint)
    launched = os.environ.get(_otel.LAUNCHED_ENV)
    reported = asyncio.run(
        run_assignment(assignment, bundle, endpoint, received_ns=int(launched) if launched else None)
    )
    _otel.note_reported(assignment.run, assignment.action, assignment.attempt, reported)
    return 0


if __name__ == "__main__":
    sys.exit(main())
