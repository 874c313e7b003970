"""Shared fixtures: every test gets its own flyte home and no user config, so tests never touch ~/.flyte; real etcd
servers (one for the session, shared by key prefix, or one of a test's own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import prerequisites
import pytest
from etcd_process import EtcdCluster, EtcdProcess
from prerequisites import ETCD_INSTALL, WEED_INSTALL, on_path, require
from s3_server import S3Server

import flyte._client as flyte_client
import flyte._config as config
from flyte.cli._s3_local import weed_binary


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "flyte-home"
    monkeypatch.setenv("FLYTE_HOME", str(home))
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    for var in ("FLYTECTL_CONFIG", "FLYTE_ENDPOINT", "FLYTE_PROJECT", "FLYTE_DOMAIN", "FLYTE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    # The SDK remembers, for its process's life, the gateways that offered no direct or multipart blob transfers:
    # a port an earlier test's gateway had may be this test's gateway's now.
    monkeypatch.setattr(flyte_client, "_NO_DIRECT", set())
    monkeypatch.setattr(flyte_client, "_NO_MULTIPART", set())
    config.init()
    yield home
    config.init()


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
    """An etcd of this test's own, for tests (and fault rows) that stop, kill, fill or compact the server."""
    require(on_path("etcd"), ETCD_INSTALL)
    server = EtcdProcess(tmp_path / "etcd-data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """Three etcd members of one cluster on loopback ports, for rows that lose a member."""
    require(on_path("etcd"), ETCD_INSTALL)
    cluster = EtcdCluster(tmp_path / "etcd-cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _require_weed() -> None:
    require(None if weed_binary() else "no `weed` binary beside python or on PATH", WEED_INSTALL)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server (SeaweedFS) for the session, bucket `flyte`; tests isolate by key prefix."""
    _require_weed()
    server = S3Server(tmp_path_factory.mktemp("s3") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_regions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[S3Server, S3Server]]:
    """Two S3 servers standing for two regions' object stores (same test key pair, bucket `flyte` on each): the
    session's `s3_server` and a second one, started here and stopped here. Tests isolate by key prefix."""
    _require_weed()
    other = S3Server(tmp_path_factory.mktemp("s3-region-2") / "data").launch()
    try:
        # Asked for once the second is launched: when the session has not started the first yet, both start at once.
        first: S3Server = request.getfixturevalue("s3_server")
        yield first, other.ready()
    finally:
        other.stop()


@pytest.fixture
def s3_fresh(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server of this test's own, for tests (and fault rows) that stop it."""
    _require_weed()
    server = S3Server(tmp_path / "s3").start()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say at the end, not only among the skips, that a missing prerequisite was skipped on request."""
    if prerequisites.skipped:
        terminalreporter.section("prerequisites skipped (--skip-missing)", yellow=True)
        for message in prerequisites.skipped:
            terminalreporter.line(message)
