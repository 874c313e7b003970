"""Fixtures of the end-to-end tests: a one-cluster rig per module, for tests of what a single agent's workers do;
browser expectations that wait long enough for a machine running two rigs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from test_rig import Rig, start_rig

SHOW_TIMEOUT = 20_000
"""Milliseconds a browser test's expectation may take where it names none (Playwright's default is 5 s): the rigs'
tests run two at a time (`scripts/test.sh`), so a page may render while another rig keeps both cores busy."""


@pytest.fixture(autouse=True, scope="session")
def pages_wait_longer() -> None:
    expect.set_options(timeout=SHOW_TIMEOUT)


@pytest.fixture(scope="module")
def one_cluster_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("rig"), clusters="us-east")
    try:
        yield started
    finally:
        started.flyte("rig", "down")
