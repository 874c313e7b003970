"""Unit fixtures: an embedded in-memory store, for gateway components tested without a gateway process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, domain

from gateway.store import Store, open_store


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("memory")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    """The gateway's parts on one in-memory store and a manual clock (`dispatcher_parts`)."""
    parts = await domain()
    try:
        yield parts
    finally:
        await parts.close()
