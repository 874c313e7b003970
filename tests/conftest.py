"""Shared fixtures: every test gets its own flyte home and no user config, so tests never touch ~/.flyte."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
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


def assert_eventually(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait until condition() holds, failing after timeout seconds: tests wait on conditions, never on sleeps."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_assert_eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
