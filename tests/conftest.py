"""Shared fixtures: every test gets its own flyte home and no user config, so tests never touch ~/.flyte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import prerequisites
import pytest

import flyte._config as config


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "flyte-home"
    monkeypatch.setenv("FLYTE_HOME", str(home))
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    for var in ("FLYTECTL_CONFIG", "FLYTE_ENDPOINT", "FLYTE_PROJECT", "FLYTE_DOMAIN", "FLYTE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    config.init()
    yield home
    config.init()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say at the end, not only among the skips, that a missing prerequisite was skipped on request."""
    if prerequisites.skipped:
        terminalreporter.section("prerequisites skipped (--skip-missing)", yellow=True)
        for message in prerequisites.skipped:
            terminalreporter.line(message)
