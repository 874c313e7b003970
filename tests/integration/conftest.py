"""Integration fixtures: a real etcd server for the session, a unique key prefix per test to isolate in it, and a
gateway process per module with an `Api` to call it.

Without `etcd` on PATH the etcd-backed tests fail with the command that installs it (`tests/prerequisites.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api
from gateway_process import GatewayProcess
from prerequisites import ETCD_INSTALL, on_path, require

from gateway.store._etcd_process import EtcdProcess


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd for the whole session (starting one costs ~0.5 s); tests share it and isolate by key prefix."""
    require(on_path("etcd"), ETCD_INSTALL)
    server = EtcdProcess(tmp_path_factory.mktemp("etcd") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_fresh(tmp_path: Path) -> Iterator[EtcdProcess]:
    """An etcd of this test's own, for tests that stop, kill or fill the server."""
    require(on_path("etcd"), ETCD_INSTALL)
    server = EtcdProcess(tmp_path / "etcd-data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """Keys of one test: nothing another test wrote to a shared store can match it."""
    return f"/test/{uuid.uuid4().hex}/"


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
