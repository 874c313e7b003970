"""Integration fixtures: a unique key prefix per test to isolate in the session's etcd (`etcd_server`, in
tests/conftest.py), and a gateway process per module with an `Api` to call it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api
from processes import GatewayProcess


@pytest.fixture
def key_prefix() -> str:
    """Keys of one test: nothing another test wrote to a shared store can match it."""
    return f"/test/{uuid.uuid4().hex}/"


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for a gateway process, once an embedded SQLite file and once this test's own etcd."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'state.db'}"
    else:
        yield request.getfixturevalue("etcd_fresh").url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway process on the in-memory store, one per test module (a module may define its own instead)."""
    process = GatewayProcess("memory", tmp_path_factory.mktemp("gateway")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    """The module's gateway, called with its admin token."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as session:
        yield Api(gateway.endpoint, session)
