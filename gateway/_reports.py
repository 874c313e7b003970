"""An action's `flyte.report` page, served for the UI to show in a sandboxed frame.

    GET /api/v1/runs/{run}/actions/{action}/report      the page (text/html), 404 when the action has none
                                                        (HEAD: the same answer without its body)

A worker records its report as a blob reference in the action's trace entry `flyte.report`
(`flyte._remote_controller.REPORT_TRACE_KEY`); this route reads that entry and streams the blob.

The page is user content, and HTML: scripts in it must not act as the logged-in user. `Content-Security-Policy:
sandbox allow-scripts` puts the page in an opaque origin wherever it is opened (in the UI's frame or on its own
tab), so its scripts run but cannot read the gateway's cookies or storage, and its requests to the gateway are
cross-origin ones that carry no SameSite=Strict session cookie and whose answers it cannot read. `nosniff` keeps
the browser from taking the page for anything but the HTML it is declared as. Reading it needs the same right as
reading the run (another project's token gets the 404 of a missing run), and the blob must belong to the run's
project: a worker cannot show another project's blob by naming its digest.
"""

from __future__ import annotations

import base64

from aiohttp import hdrs, web

from flyte._remote_controller import REPORT_TRACE_KEY
from flyte._wire import WireTrace
from gateway._api import services, visible_run
from gateway._blobs import is_digest
from gateway._connections import encode_trace_key
from gateway._errors import not_found
from gateway._keys import trace_key

REPORT_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "sandbox allow-scripts",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def get_report(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    run = await visible_run(request)
    action = await svc.runs.get_action(run.name, request.match_info["action"])
    kv = await svc.store.get(trace_key(run.name, action.name, encode_trace_key(REPORT_TRACE_KEY)))
    missing = not_found(f"action {action.name} of run {run.name} has no report")
    if kv is None:
        raise missing
    ref = base64.b64decode(WireTrace.model_validate_json(kv.value).payload_b64).decode(errors="replace")
    digest = ref.removeprefix("blob:")
    if not is_digest(digest) or run.project not in await svc.blobs.projects(digest):
        raise missing
    if not await svc.blobs.exists(digest):
        raise not_found(f"the report of action {action.name} is no longer stored")
    response = web.StreamResponse(headers=REPORT_HEADERS)
    await response.prepare(request)
    # aiohttp leaves a streamed HEAD answer's body to its handler, and would send what it is given: bytes after the
    # headers of a HEAD answer, which the client reads as the start of its next answer on the kept-alive connection
    # (the UI's HEAD and then its frame's GET: the frame showed an invalid response instead of the report).
    if request.method != hdrs.METH_HEAD:
        async for chunk in svc.blobs.chunks(digest):
            await response.write(chunk)
    await response.write_eof()
    return response
