"""A small HTTP server on 127.0.0.1 standing for someone else's endpoint in a test: a webhook, a chat channel, an
OTLP collector. It serves every method and path with one handler, on a free port, and stops when the block ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


@contextlib.asynccontextmanager
async def http_receiver(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Serve `handler` on a free loopback port; yields the server's base URL (`http://127.0.0.1:PORT`)."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
