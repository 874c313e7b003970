"""Local mode: `flyte.Cache` and the SQLite cache under FLYTE_HOME, within a process and across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import flyte
from flyte._paths import cache_db_path
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_cache")

# How many times each body really ran, per test key (a cache hit does not run the body).
_RUNS: Counter[str] = Counter()


@env.task(cache="auto")
def cached(key: str, x: int) -> str:
    _RUNS[key] += 1
    return f"{x}:{_RUNS[key]}"


@env.task(cache=flyte.Cache("auto", ignored_inputs=("note",)))
def ignores_note(key: str, x: int, note: str) -> str:
    _RUNS[key] += 1
    return f"{x}:{note}:{_RUNS[key]}"


@env.task
def uncached(key: str) -> int:
    _RUNS[key] += 1
    return _RUNS[key]


@env.task(cache="auto")
def fails_first(key: str) -> int:
    _RUNS[key] += 1
    if _RUNS[key] == 1:
        raise RuntimeError("the first call fails")
    return _RUNS[key]


@env.task
def calls_cached_twice(key: str) -> list[str]:
    return [cached(key, 1), cached(key, 1), cached(key, 2)]


# Two bodies of one task, as a code change between two deployments would look: same name, same interface.
def _first_body(key: str) -> str:
    _RUNS[key] += 1
    return "first body"


def _second_body(key: str) -> str:
    _RUNS[key] += 1
    return "second body"


_first_body.__name__ = _second_body.__name__ = "changing"
_old = flyte.TaskEnvironment("sdk_cache_versions")
changing_auto_v1 = _old.task(cache="auto")(_first_body)
changing_pinned_v1 = _old.task(cache=flyte.Cache("override", version_override="v1"))(_first_body)
_new = flyte.TaskEnvironment("sdk_cache_versions")
changing_auto_v2 = _new.task(cache="auto")(_second_body)
changing_pinned_v2 = _new.task(cache=flyte.Cache("override", version_override="v1"))(_second_body)


def _key() -> str:
    return uuid.uuid4().hex


def _root_cached(run: flyte.Run) -> bool:
    return run._state.actions["a0"].cached


def test_second_run_with_the_same_inputs_is_a_cache_hit() -> None:
    key = _key()
    first = flyte.run(cached, key, 1)
    second = flyte.run(cached, key, 1)
    assert first.outputs()[0] == second.outputs()[0] == "1:1"
    assert _RUNS[key] == 1
    assert not _root_cached(first)
    assert _root_cached(second)
    assert cache_db_path().exists()


def test_different_inputs_miss() -> None:
    key = _key()
    assert flyte.run(cached, key, 1).outputs()[0] == "1:1"
    assert flyte.run(cached, key, 2).outputs()[0] == "2:2"
    assert _RUNS[key] == 2


def test_a_task_without_cache_runs_every_time() -> None:
    key = _key()
    assert flyte.run(uncached, key).outputs()[0] == 1
    assert flyte.run(uncached, key).outputs()[0] == 2


def test_child_calls_within_a_run_share_the_cache() -> None:
    key = _key()
    run = flyte.run(calls_cached_twice, key)
    assert run.outputs()[0] == ["1:1", "1:1", "2:2"]
    children = [a for a in run._state.actions.values() if a.parent == "a0"]
    assert [c.cached for c in children] == [False, True, False]


def test_ignored_inputs_are_left_out_of_the_key() -> None:
    key = _key()
    assert flyte.run(ignores_note, key, 1, "first").outputs()[0] == "1:first:1"
    assert flyte.run(ignores_note, key, 1, "second").outputs()[0] == "1:first:1"
    assert flyte.run(ignores_note, key, 2, "first").outputs()[0] == "2:first:2"
    assert _RUNS[key] == 2


def test_salt_changes_the_key() -> None:
    key = _key()
    salted_a = cached.override(cache=flyte.Cache("auto", salt="a"))
    salted_b = cached.override(cache=flyte.Cache("auto", salt="b"))
    assert flyte.run(salted_a, key, 1).outputs()[0] == "1:1"
    assert flyte.run(salted_a, key, 1).outputs()[0] == "1:1"
    assert flyte.run(salted_b, key, 1).outputs()[0] == "1:2"
    assert flyte.run(cached, key, 1).outputs()[0] == "1:3"
    assert _RUNS[key] == 3


def test_auto_version_follows_the_code() -> None:
    key = _key()
    assert changing_auto_v1.name == changing_auto_v2.name
    assert flyte.run(changing_auto_v1, key).outputs()[0] == "first body"
    assert flyte.run(changing_auto_v2, key).outputs()[0] == "second body"
    assert _RUNS[key] == 2


def test_version_override_keeps_hits_across_code_changes() -> None:
    key = _key()
    assert flyte.run(changing_pinned_v1, key).outputs()[0] == "first body"
    assert flyte.run(changing_pinned_v2, key).outputs()[0] == "first body"
    assert _RUNS[key] == 1
    bumped = changing_pinned_v2.override(cache=flyte.Cache("override", version_override="v2"))
    assert flyte.run(bumped, key).outputs()[0] == "second body"
    assert _RUNS[key] == 2


def test_overwrite_cache_runs_again_and_replaces_the_entry() -> None:
    key = _key()
    assert flyte.run(cached, key, 1).outputs()[0] == "1:1"
    overwritten = flyte.with_runcontext(overwrite_cache=True).run(cached, key, 1)
    assert overwritten.outputs()[0] == "1:2"
    assert not _root_cached(overwritten)
    assert flyte.run(cached, key, 1).outputs()[0] == "1:2"
    assert _RUNS[key] == 2


def test_disable_run_cache_skips_the_cache() -> None:
    key = _key()
    assert flyte.run(cached, key, 1).outputs()[0] == "1:1"
    assert flyte.with_runcontext(disable_run_cache=True).run(cached, key, 1).outputs()[0] == "1:2"


def test_failures_are_not_cached() -> None:
    key = _key()
    assert flyte.run(fails_first, key).phase is Phase.FAILED
    assert flyte.run(fails_first, key).outputs()[0] == 2
    assert flyte.run(fails_first, key).outputs()[0] == 2
    assert _RUNS[key] == 2


_PROGRAM = textwrap.dedent(
    """
    import json, os, sys
    import flyte

    env = flyte.TaskEnvironment("sdk_cache_proc")

    @env.task(cache="auto")
    def expensive(x: int) -> dict[str, int]:
        with open(os.environ["SIDE_EFFECTS"], "a") as out:
            out.write(f"{os.getpid()}\\n")
        return {"x": x, "pid": os.getpid()}

    run = flyte.run(expensive, int(sys.argv[1]))
    print(json.dumps({"output": run.outputs()[0], "cached": run._state.actions["a0"].cached}))
    """
)


def _run_program(script: Path, side_effects: Path, x: int) -> dict[str, object]:
    environment = {**os.environ, "SIDE_EFFECTS": str(side_effects)}
    done = subprocess.run(
        [sys.executable, str(script), str(x)],
        cwd=script.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_cache_is_shared_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "program" / "cached_program.py"
    script.parent.mkdir()
    script.write_text(_PROGRAM)
    side_effects = tmp_path / "side-effects.txt"

    first = _run_program(script, side_effects, 7)
    second = _run_program(script, side_effects, 7)

    assert first["cached"] is False
    assert second["cached"] is True
    assert second["output"] == first["output"]
    assert side_effects.read_text().splitlines() == [str(first["output"]["pid"])]  # type: ignore[index]
    assert cache_db_path().exists()
