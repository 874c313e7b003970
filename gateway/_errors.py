"""How the API says no: every failure is a JSON `{code, message}` with a 4xx or 5xx status, never a traceback.

Handlers raise `ApiError`; the domain raises `gateway._domain_errors` kinds, which `HTTP_STATUS` maps to a status
here, and nowhere else (the `code` is the error's own). The middleware also maps pydantic validation errors (400),
aiohttp's own HTTP errors (404, 405, 413), an unreachable store (503) and anything unexpected (500, logged with an
id the client sees).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable

import pydantic
from aiohttp import web

from gateway._domain_errors import (
    Busy,
    Conflict,
    DomainError,
    Fenced,
    Forbidden,
    IllegalTransition,
    Invalid,
    NotFound,
    StaleAttempt,
    StaleEpoch,
    TooLarge,
    Unavailable,
)
from gateway.store import QuotaExceeded, StoreUnavailable

log = logging.getLogger("flyte.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


HTTP_STATUS: dict[type[DomainError], int] = {
    Invalid: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Busy: 409,
    StaleEpoch: 409,
    StaleAttempt: 409,
    IllegalTransition: 409,
    Fenced: 409,
    TooLarge: 413,
    Unavailable: 503,
}
"""The HTTP status of each kind of domain error (a kind not listed answers as its nearest listed base)."""


def as_api_error(error: DomainError) -> ApiError:
    """The HTTP answer to a domain error: its kind's status, with the error's own code and message."""
    status = next((HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS), 500)
    return ApiError(status, error.code, error.message)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One readable line per problem, naming the field: `tasks.0.name: String should match pattern ...`."""
    problems = []
    for item in error.errors()[:10]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message)
    except DomainError as error:
        answer = as_api_error(error)
        return error_response(answer.status, answer.code, answer.message)
    except pydantic.ValidationError as error:
        return error_response(400, "invalid", describe_validation_error(error))
    except json.JSONDecodeError as error:
        return error_response(400, "malformed_json", f"the body is not valid JSON: {error.msg} at {error.pos}")
    except web.HTTPRequestEntityTooLarge as error:
        return error_response(413, "too_large", f"the body is too large: {error.text}")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason.lower().replace(" ", "_"), error.reason)
    except QuotaExceeded as error:
        return error_response(507, "store_quota", f"the store is over its space quota: {error}")
    except StoreUnavailable as error:
        return error_response(503, "store_unavailable", f"the state store is unavailable: {error}")
    except Exception:
        incident = secrets.token_hex(6)
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return error_response(500, "internal", f"internal error; the gateway log has the details (id {incident})")
