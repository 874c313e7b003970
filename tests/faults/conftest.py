"""The fault matrix's fixtures: seeds, an etcd per test, a federation torn down even on failure, and the
recovery times every row records (a JSON file under pytest's temporary directory and a summary at the end).

`--seeds N` runs every row with seeds 1..N; without it each row runs its fast set (`@pytest.mark.seeds(k)`:
seeds 1..k, default 2; rows that cost more than ~10 s ask for 1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_process import EtcdProcess
from federation import RECOVERY_TIMES, Federation, Recovery


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seeds", type=int, default=None, help="fault matrix: run every row with seeds 1..N")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "seeds(k): the fault matrix's fast seed set for a row: seeds 1..k")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    count = metafunc.config.getoption("--seeds")
    if count is None:
        marker = metafunc.definition.get_closest_marker("seeds")
        count = marker.args[0] if marker else 2
    metafunc.parametrize("seed", range(1, count + 1), ids=lambda s: f"seed{s}")


@pytest.fixture
def federation(tmp_path: Path, etcd_fresh: EtcdProcess) -> Iterator[Federation]:
    """A gateway on an etcd of the test's own (not started: rows choose its host and lease), stopped even on
    failure. Rows stop, fill and compact that etcd."""
    fed = Federation(tmp_path / "fed", etcd_fresh)
    fed.root.mkdir()
    try:
        yield fed
    finally:
        fed.close()


@pytest.fixture
def recovery(request: pytest.FixtureRequest) -> Recovery:
    seed = request.node.callspec.params.get("seed", 0) if hasattr(request.node, "callspec") else 0
    return Recovery(request.node.originalname, seed)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not RECOVERY_TIMES:
        return
    path = Path(str(config._tmp_path_factory.getbasetemp())) / "faults-recovery.json"  # type: ignore[attr-defined]
    path.write_text(json.dumps(RECOVERY_TIMES, indent=2))
    terminalreporter.section("fault matrix: recovery times")
    for item in RECOVERY_TIMES:
        terminalreporter.write_line(
            f"{item['row']:<52} seed {item['seed']:>2}  {item['seconds']:6.2f}s  (bound {item['bound']:.1f}s)"
        )
    terminalreporter.write_line(f"written to {path}")
