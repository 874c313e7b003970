"""The token API (admin only): make a token, list the stored ones (never their secrets), revoke one.

A revocation deletes the token's record and drops it from this gateway's cache, so its next request, and the next
message of a socket it opened, is a 401 (`gateway._auth.Authenticator.check_current`).
"""

from __future__ import annotations

from aiohttp import web

from flyte._wire import TokenAnswer, TokenInfo, TokenRequest
from gateway._api import Route, _json, read_model, services
from gateway._auth import TokenRecord, issue_token, principal_of, revoke_token, stored_tokens, token_id, validate_scope
from gateway._errors import bad_request, not_found
from gateway._otlp import AUTHENTICATOR


def _info(ident: str, record: TokenRecord) -> TokenInfo:
    return TokenInfo(id=ident, **record.model_dump())


async def make_token(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    body = await read_model(request, TokenRequest)
    for scope in body.scopes:
        try:
            validate_scope(scope)
        except ValueError as error:
            raise bad_request(str(error), code="invalid_scope") from None
    token, record = await issue_token(
        services(request).store, body.scopes, body.projects, body.description, body.expires_in_seconds
    )
    answer = TokenAnswer(
        token=token, scopes=record.scopes, projects=record.projects, id=token_id(token), expires_at=record.expires_at
    )
    return _json(answer, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    return _json([_info(ident, record) for ident, record in await stored_tokens(services(request).store)])


async def delete_token(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    ident = request.match_info["token"]
    record = await revoke_token(services(request).store, ident)
    if record is None:
        raise not_found(f"no token with id {ident}; `flyte gateway token list` lists them")
    request.app[AUTHENTICATOR].forget(ident)
    return _json(_info(ident, record))


TOKEN_ROUTES: list[Route] = [
    Route(
        "POST",
        "/api/v1/tokens",
        make_token,
        "Make a bearer token with scopes and an optional expiry (admin only)",
        TokenRequest,
        TokenAnswer,
    ),
    Route(
        "GET", "/api/v1/tokens", list_tokens, "Stored tokens, never their secrets (admin only)", None, TokenInfo, True
    ),
    Route(
        "DELETE",
        "/api/v1/tokens/{token}",
        delete_token,
        "Revoke a token by its id: refused (401) at once, on open sockets too (admin only)",
        None,
        TokenInfo,
    ),
]
