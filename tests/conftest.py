"""Shared fixtures: every test gets its own flyte home and no user config, so tests never touch ~/.flyte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
