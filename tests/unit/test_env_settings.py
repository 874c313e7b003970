"""Settings from environment variables (`flyte._env`): a value that is not one is named, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flyte._env import EnvSettingError, env_float, env_int, env_switch


def test_unset_or_empty_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYTE_TEST_SETTING", raising=False)
    assert env_int("FLYTE_TEST_SETTING", 7) == 7
    monkeypatch.setenv("FLYTE_TEST_SETTING", "  ")
    assert env_float("FLYTE_TEST_SETTING", 2.5) == 2.5


def test_a_value_is_read_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_TEST_SETTING", " 20_000 ")
    assert env_int("FLYTE_TEST_SETTING", 7) == 20_000
    monkeypatch.setenv("FLYTE_TEST_SETTING", "0.25")
    assert env_float("FLYTE_TEST_SETTING", 10.0) == 0.25
    monkeypatch.setenv("FLYTE_TEST_SETTING", "0")
    assert env_float("FLYTE_TEST_SETTING", 30.0, above=False) == 0.0
    assert env_int("FLYTE_TEST_SETTING", 5, minimum=0) == 0


@pytest.mark.parametrize(
    ("raw", "on"),
    [
        ("", True),
        ("1", True),
        (" TRUE ", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("off", False),
    ],
)
def test_a_switch_reads_on_and_off_in_any_case(monkeypatch: pytest.MonkeyPatch, raw: str, on: bool) -> None:
    monkeypatch.setenv("FLYTE_TEST_SETTING", raw)
    assert env_switch("FLYTE_TEST_SETTING", True) is on


@pytest.mark.parametrize(
    ("raw", "read", "says"),
    [
        ("10s", lambda: env_float("FLYTE_TEST_SETTING", 10.0), "FLYTE_TEST_SETTING='10s' is not a number above 0"),
        ("0", lambda: env_float("FLYTE_TEST_SETTING", 10.0), "is not a number above 0"),
        ("-1", lambda: env_float("FLYTE_TEST_SETTING", 30.0, above=False), "is not a number of at least 0"),
        ("nan", lambda: env_float("FLYTE_TEST_SETTING", 10.0), "is not a number above 0"),
        ("inf", lambda: env_float("FLYTE_TEST_SETTING", 10.0), "is not a number above 0"),
        ("1.5", lambda: env_int("FLYTE_TEST_SETTING", 4), "is not a whole number of at least 1"),
        ("0", lambda: env_int("FLYTE_TEST_SETTING", 4), "is not a whole number of at least 1"),
        ("lots", lambda: env_int("FLYTE_TEST_SETTING", 4), "(the default is 4)"),
        ("2", lambda: env_switch("FLYTE_TEST_SETTING", True), "is neither on (1, true, yes, on) nor off"),
        ("enabled", lambda: env_switch("FLYTE_TEST_SETTING", False), "(the default is off)"),
    ],
)
def test_a_value_that_is_not_one_is_named(monkeypatch: pytest.MonkeyPatch, raw: str, read: object, says: str) -> None:
    monkeypatch.setenv("FLYTE_TEST_SETTING", raw)
    with pytest.raises(EnvSettingError) as raised:
        read()  # type: ignore[operator]
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLYTE_LEASE_TTL", "10s", "is not a number above 0; give one (the default is 10)"),
        ("FLYTE_SPANS_PER_RUN", "many", "is not a whole number of at least 0; give one (the default is 20000)"),
        ("FLYTE_WORKER_TOKEN_GRACE", "-5", "is not a number of at least 0; give one (the default is 30)"),
        (
            "FLYTE_CHILDREN_HERE",
            "sometimes",
            "is neither on (1, true, yes, on) nor off (0, false, no, off); give one (the default is on)",
        ),
    ],
)
def test_the_gateway_refuses_a_bad_setting_on_one_line(tmp_path: Path, variable: str, value: str, says: str) -> None:
    env = {**os.environ, variable: value, "FLYTE_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "flyte.cli", "gateway", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"Error: {variable}={value!r} {says} or unset it"]
    assert not (tmp_path / "home" / "gateway" / "state.db").exists(), "nothing is written before the settings are read"
