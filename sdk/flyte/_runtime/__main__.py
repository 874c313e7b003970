"""`python -m flyte._runtime`: run one assignment, or serve a warm pool (`--pool`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .. import _collector, _otel
from .._wire import Assignment
from ._bundle import fetch_bundle
from ._output import capture
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
    # The task's code sees the command line of a plain `python` program, not the worker's own arguments.
    del sys.argv[1:]
    # A pool worker keeps each attempt's output apart; its tees go in before logging's handler takes the stream.
    output = capture() if args.pool is not None else None
    # The task's own `logging.info` reaches its logs, as under `python prog.py` with logging configured; the
    # runtime's own INFO chatter does not.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("flyte").setLevel(logging.WARNING)
    endpoint = os.environ["FLYTE_ENDPOINT"]
    if args.spare is not None:
        from ._spare import serve_once

        asyncio.run(serve_once(args.spare, endpoint))
        return 0
    if output is not None:
        from ._pool import serve_pool

        asyncio.run(serve_pool(args.pool, args.bundle, endpoint, args.concurrency, output))
        return 0
    # A pod cannot read the agent's files: its agent passes the assignment (which holds the run token) through a
    # Secret into the environment, and the worker fetches the bundle from the gateway with that token.
    say_up()
    # The assignment holds this attempt's token: once read, it is left neither on disk nor in the environment, so
    # the task's code and what it starts do not come across it.
    if args.assignment is not None:
        text = args.assignment.read_text()
        args.assignment.unlink(missing_ok=True)
    else:
        text = os.environ.pop("FLYTE_ASSIGNMENT")
    assignment = Assignment.model_validate_json(text)
    # A parent with thousands of children in flight holds them all: collections would walk them again and again.
    _collector.collect_less_often(_collector.WORKER_GC_THRESHOLDS, collect_first=False)
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
