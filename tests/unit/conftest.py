"""Unit fixtures: an embedded in-memory store, for gateway components tested without a gateway process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, open_store


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("memory")
    try:
        yield opened
    finally:
        await opened.close()
