"""Fixtures of the end-to-end tests: a one-cluster rig per module, for tests of what a single agent's workers do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_rig import Rig, start_rig


@pytest.fixture(scope="module")
def one_cluster_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("rig"), clusters="us-east")
    try:
        yield started
    finally:
        started.flyte("rig", "down")
