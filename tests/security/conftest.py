"""The security suite's rig: a real federation (etcd, `flyte gateway serve`, one agent, the workers it starts) shared
by the suite, with `run` tokens of two projects, alpha and beta, as tenants that must not reach each other.

Each test plays an attacker holding one project's `run` token and asserts both the refusal and that nothing was
written or executed. The launchers are the fault matrix's (`tests/faults/federation.py`) and the integration
suite's; nothing of ours is mocked.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in ("faults", "integration"):
    if str(HERE.parent / folder) not in sys.path:
        sys.path.insert(0, str(HERE.parent / folder))

from etcd_process import EtcdProcess  # noqa: E402
from federation import Federation, require_etcd  # noqa: E402
from tenants import TASKS, Tenants  # noqa: E402


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    """One federation for the suite: attacks only talk to its API and its one agent."""
    require_etcd()
    root = tmp_path_factory.mktemp("security")
    server = EtcdProcess(root / "etcd-data").start()
    fed = Federation(root / "fed", server)
    fed.root.mkdir()
    try:
        fed.start_gateway()
        fed.start_agent("us-east", cpu="4")
        yield Tenants(fed)
    finally:
        fed.close()
        server.stop()


@pytest.fixture(scope="session")
def deployed(tenants: Tenants) -> Tenants:
    """The federation with `TASKS` deployed in project alpha."""
    tenants.deploy("alpha", tenants.load("sec_tasks_program", TASKS))
    return tenants
