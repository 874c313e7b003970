"""The placement API: the policy in force, cordon and drain, each cluster as placement sees it, and the recorded
decisions (`flyte get placement`, `flyte policy simulate`)."""

from __future__ import annotations

import time

from aiohttp import web

from flyte._wire import ClusterRecord, CordonRequest, PlacementRecord, PolicyDocument
from gateway._api import _NAME, Route, _json, read_model, services, visible_run
from gateway._auth import principal_of
from gateway._dispatch import DISPATCHER
from gateway._errors import ApiError, bad_request, not_found
from gateway._keys import CLUSTERS, PLACEMENTS, cluster_key, placements_prefix

PLACEMENTS_LISTED = 10_000
"""The most decisions one `GET /api/v1/placements` answers (`?limit=` lowers it)."""


async def _cluster(request: web.Request) -> ClusterRecord:
    name = request.match_info["cluster"]
    kv = await services(request).store.get(cluster_key(name)) if _NAME.match(name) else None
    if kv is None:
        raise not_found(f"no cluster named {name}; `flyte get clusters` lists them")
    return request.app[DISPATCHER].cluster_view(ClusterRecord.model_validate_json(kv.value))


async def list_clusters(request: web.Request) -> web.Response:
    principal_of(request).require_reader(None)
    kvs, _ = await services(request).store.range(CLUSTERS)
    dispatcher = request.app[DISPATCHER]
    return _json([dispatcher.cluster_view(ClusterRecord.model_validate_json(kv.value)) for kv in kvs])


async def get_cluster(request: web.Request) -> web.Response:
    principal_of(request).require_reader(None)
    return _json(await _cluster(request))


async def cordon_cluster(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    body = await read_model(request, CordonRequest)
    await _cluster(request)
    await request.app[DISPATCHER].cordon(request.match_info["cluster"], body.reason, body.drain)
    return _json(await _cluster(request))


async def uncordon_cluster(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    await _cluster(request)
    await request.app[DISPATCHER].uncordon(request.match_info["cluster"])
    return _json(await _cluster(request))


async def get_policy(request: web.Request) -> web.Response:
    principal_of(request).require_reader(None)
    return _json(request.app[DISPATCHER].policy_document)


async def put_policy(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    body = await read_model(request, PolicyDocument)
    try:
        document = await request.app[DISPATCHER].apply_policy(body.text)
    except ValueError as error:
        raise ApiError(400, "invalid_policy", str(error)) from None
    return _json(document)


async def get_placement(request: web.Request) -> web.Response:
    run = await visible_run(request)
    action = request.match_info["action"]
    kvs, _ = await services(request).store.range(placements_prefix(run.name, action))
    if not kvs:
        waiting = await services(request).runs.get_action(run.name, action)
        if waiting.waiting is not None:
            # The placer records one decision for a group of like actions that wait for the same reason.
            raise not_found(
                f"no placement decision is recorded for {run.name}/{action}: it waits ({waiting.waiting}) behind "
                f"an earlier action of {waiting.parent or 'its run'} with the same task and demand, whose decision "
                "says why"
            )
        raise not_found(f"no placement decision is recorded for {run.name}/{action}")
    return _json(PlacementRecord.model_validate_json(max(kvs, key=lambda kv: kv.key).value))


async def list_placements(request: web.Request) -> web.Response:
    principal_of(request).require("admin")
    try:
        since = float(request.query.get("since", "0"))
        limit = int(request.query.get("limit", str(PLACEMENTS_LISTED)))
    except ValueError:
        raise bad_request("since must be a unix time in seconds and limit a whole number") from None
    if since < 0 or since > time.time() + 86_400 or not 1 <= limit <= PLACEMENTS_LISTED:
        raise bad_request(f"since must be a past unix time and limit between 1 and {PLACEMENTS_LISTED}")
    kvs, _ = await services(request).store.range(PLACEMENTS)
    records = [PlacementRecord.model_validate_json(kv.value) for kv in kvs]
    recent = sorted((r for r in records if r.decided_at >= since), key=lambda r: r.decided_at)
    return _json(recent[-limit:])


PLACEMENT_ROUTES: list[Route] = [
    Route("GET", "/api/v1/clusters", list_clusters, "Registered clusters", None, ClusterRecord, many=True),
    Route("GET", "/api/v1/clusters/{cluster}", get_cluster, "One cluster", None, ClusterRecord),
    Route(
        "POST",
        "/api/v1/clusters/{cluster}/cordon",
        cordon_cluster,
        "Cordon a cluster (no new work), or drain it (also move placed work that has not started)",
        CordonRequest,
        ClusterRecord,
    ),
    Route(
        "POST", "/api/v1/clusters/{cluster}/uncordon", uncordon_cluster, "Let new work land again", None, ClusterRecord
    ),
    Route("GET", "/api/v1/policy", get_policy, "The placement policy in force", None, PolicyDocument),
    Route(
        "PUT",
        "/api/v1/policy",
        put_policy,
        "Apply a placement policy (YAML in `text`); refused with the line and field when invalid",
        PolicyDocument,
        PolicyDocument,
    ),
    Route(
        "GET",
        "/api/v1/runs/{run}/actions/{action}/placement",
        get_placement,
        "The latest placement decision of an action: each cluster's verdict and score",
        None,
        PlacementRecord,
    ),
    Route(
        "GET",
        "/api/v1/placements",
        list_placements,
        "Recorded placement decisions since ?since= (unix seconds), oldest first, at most ?limit=",
        None,
        PlacementRecord,
        many=True,
    ),
]
