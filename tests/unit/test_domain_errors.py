"""The one mapping from the gateway's domain errors to HTTP answers (`gateway._errors.as_api_error`), and the
answers the API has always given for them (their statuses and codes are part of the API)."""

from __future__ import annotations

import inspect

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import _domain_errors
from gateway._domain_errors import (
    Busy,
    Conflict,
    DomainError,
    Forbidden,
    IllegalTransition,
    Invalid,
    NotFound,
    StaleAttempt,
    StaleEpoch,
    TooLarge,
    Unavailable,
)
from gateway._errors import HTTP_STATUS, as_api_error, error_middleware

KINDS = [
    cls
    for _, cls in inspect.getmembers(_domain_errors, inspect.isclass)
    if issubclass(cls, DomainError) and cls is not DomainError
]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Invalid("a failed event must carry the error"), 400, "bad_request"),
        (Invalid("missing inputs ['x']", code="missing_input"), 400, "missing_input"),
        (TooLarge("the output is 9 bytes inline", code="inline_io_too_large"), 413, "inline_io_too_large"),
        (NotFound("no run named r1"), 404, "not_found"),
        (Forbidden("this token may not read r1"), 403, "forbidden"),
        (Forbidden("a0 runs on cluster east, not on west", code="wrong_cluster"), 403, "wrong_cluster"),
        (Conflict("a run named r1 already exists", code="run_exists"), 409, "run_exists"),
        (Conflict("run r1 is succeeded", code="run_ended"), 409, "run_ended"),
        (Busy("run creation raced with others; try again"), 409, "busy"),
        (StaleEpoch("stale event from east epoch 1"), 409, "stale_epoch"),
        (StaleAttempt("event for attempt 1 of a0, which expects attempt 2"), 409, "stale_attempt"),
        (IllegalTransition("a0 cannot go from succeeded to running"), 409, "illegal_transition"),
    ],
    ids=lambda value: value if isinstance(value, str | int) else type(value).__name__,
)
def test_each_domain_error_answers_with_its_status_and_code(error: DomainError, status: int, code: str) -> None:
    answer = as_api_error(error)
    assert (answer.status, answer.code, answer.message) == (status, code, error.message)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_kind_has_its_own_status(kind: type[DomainError]) -> None:
    # A kind added without a status would answer 500: the mapping names each one.
    assert kind in HTTP_STATUS
    # The caller's fault, except a service the domain needs being down (503: try again later).
    assert 400 <= HTTP_STATUS[kind] < 500 or (kind is Unavailable and HTTP_STATUS[kind] == 503)


def test_only_busy_among_conflicts_is_worth_trying_again() -> None:
    assert [kind.__name__ for kind in KINDS if issubclass(kind, Busy)] == ["Busy"]
    assert all(issubclass(kind, Conflict) for kind in (Busy, StaleEpoch, StaleAttempt, IllegalTransition))


async def test_the_middleware_answers_a_domain_error_as_json() -> None:
    async def refuse(request: web.Request) -> web.Response:
        raise Conflict("run r1 is failed; it takes no new actions", code="run_ended")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/", refuse)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/")
        assert response.status == 409
        assert await response.json() == {"code": "run_ended", "message": "run r1 is failed; it takes no new actions"}
