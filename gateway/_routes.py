"""Every documented API route: the router and the OpenAPI document are both made from this one list."""

from __future__ import annotations

from gateway._api import ROUTES, Route
from gateway._conditions import CONDITION_ROUTES
from gateway._notify import NOTIFY_ROUTES
from gateway._placement_api import PLACEMENT_ROUTES
from gateway._secrets import SECRET_ROUTES
from gateway._tokens_api import TOKEN_ROUTES
from gateway._triggers_api import TRIGGER_ROUTES

ALL_ROUTES: list[Route] = [
    *ROUTES,
    *PLACEMENT_ROUTES,
    *SECRET_ROUTES,
    *TOKEN_ROUTES,
    *CONDITION_ROUTES,
    *TRIGGER_ROUTES,
    *NOTIFY_ROUTES,
]
