"""The brief's programs run unchanged, as separate processes, with no config: local mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "examples"
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def test_repo_examples_are_the_briefs_unchanged() -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared/ beside this checkout")
    shared = {p.name: p.read_text() for p in SHARED.glob("*.py")}
    ours = {p.name: p.read_text() for p in EXAMPLES}
    assert ours == shared


@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_locally(program: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FLYTE_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(program)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    run_name, url = lines[-2], lines[-1]
    assert run_name.startswith("r")
    assert len(run_name) == 12
    run_json = Path(url) / "run.json"
    assert run_json.exists()
    assert '"phase": "succeeded"' in run_json.read_text()
