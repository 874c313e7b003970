"""Deployed tasks known only by their spec: JSON-schema checks of arguments, decoding by the spec, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pydantic
import pytest
from click.testing import CliRunner

import flyte
from flyte._codec import EncodedValue, ValueCodec
from flyte._deploy import task_spec
from flyte._remote_task import RemoteTask
from flyte._schema import schema_errors
from flyte._wire import TaskVersion
from flyte.cli import main
from flyte.errors import ValueEncodingError

env = flyte.TaskEnvironment("remote_spec_env")


class Point(pydantic.BaseModel):
    x: int
    y: float = 0.0


@dataclasses.dataclass
class Box:
    corner: Point
    tags: list[str]


class Opaque:
    """No JSON form: travels pickled."""


@env.task
async def shapes(
    points: list[Point], box: Box, pair: tuple[int, str], maybe: int | None = None, blob: Opaque | None = None
) -> tuple[int, str]:
    return len(points), box.tags[0]


def _remote(task: Any) -> RemoteTask:
    spec = task_spec(task)
    return RemoteTask(
        TaskVersion(
            project="default",
            domain="development",
            env=task.env.name,
            version="v1",
            bundle_digest="0" * 64,
            spec=spec,
            content_digest="0" * 64,
            deployed_at=0.0,
        )
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([{"x": 1}], None),
        ([{"x": 1, "y": 2}], None),
        ([{"y": 2.0}], "[0] is missing the field 'x'"),
        ([{"x": "one"}], "[0].x expects integer, got str 'one'"),
        ([{"x": True}], "[0].x expects integer, got bool True"),
        ({"x": 1}, "expects array of Point, got dict {'x': 1}"),
    ],
)
def test_schema_errors_name_the_place_in_the_value(value: Any, error: str | None) -> None:
    schema = ValueCodec(list[Point], "points").json_schema()
    assert schema is not None
    assert schema_errors(value, schema) == ([] if error is None else [error])


def test_a_tuple_union_and_nested_dataclass_are_checked_by_their_schemas() -> None:
    pair = ValueCodec(tuple[int, str], "pair").json_schema()
    assert pair is not None
    assert schema_errors([1, "a"], pair) == []
    assert schema_errors([1], pair) == ["the value must have 2 items, got 1"]
    assert schema_errors(["a", "a"], pair) == ["[0] expects integer, got str 'a'"]
    maybe = ValueCodec(int | None, "maybe").json_schema()
    assert maybe is not None
    assert schema_errors(None, maybe) == []
    assert schema_errors("x", maybe) == ["expects integer or null, got str 'x'"]


def test_a_remote_task_checks_arguments_against_the_deployed_interface() -> None:
    remote = _remote(shapes)
    interface = remote.interface
    good = interface.bind((), {"points": [Point(x=1)], "box": Box(Point(x=2), ["a"]), "pair": (1, "a")})
    encoded = interface.encode_inputs(good)
    assert set(encoded.values) == {"points", "box", "pair"}, "omitted optional inputs keep the task's defaults"
    assert encoded.values["box"].payload == b'{"corner":{"x":2,"y":0.0},"tags":["a"]}'
    with pytest.raises(ValueEncodingError, match=r"input 'box' of task remote_spec_env.shapes: tags\[0\] expects"):
        interface.encode_inputs({"box": {"corner": {"x": 1}, "tags": [3]}})
    with pytest.raises(TypeError, match="missing the argument 'box'; it takes shapes"):
        interface.bind((), {"points": []})
    with pytest.raises(TypeError, match="unexpected argument 'nope'"):
        interface.bind(([], {}, (1, "a")), {"nope": 1})
    pickled = interface.encode_inputs({"blob": Opaque()})
    assert pickled.values["blob"].kind == "pickle"


def test_outputs_decode_by_the_spec() -> None:
    remote = _remote(shapes)
    assert remote.interface.output_codec.decode(EncodedValue("json", "d", payload=b'[3, "a"]')) == (3, "a")
    assert remote.interface.output_arity == 2


def test_override_of_a_remote_task_sends_only_what_changed() -> None:
    remote = _remote(shapes)
    assert remote.overrides is None
    changed = remote.override(retries=3, resources=flyte.Resources(cpu=2)).override(reusable="off")
    assert changed.overrides is not None
    assert changed.overrides.retries == 3
    assert changed.overrides.resources is not None
    assert changed.overrides.resources.model_dump() == flyte.Resources(cpu=2).to_dict()
    assert changed.overrides.reusable_off
    assert remote.overrides is None, "override returns a copy"
    with pytest.raises(ValueError, match="cache cannot be overridden per call"):
        remote.override(cache="auto")


def test_calling_a_remote_task_outside_a_remote_task_says_how_to_run_it() -> None:
    with pytest.raises(flyte.errors.RemoteTaskNotFoundError, match=r"run it with flyte\.run"):
        _remote(shapes)(points=[])


def test_flyte_run_deployed_task_needs_a_gateway_and_a_file_must_exist(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    deployed = runner.invoke(main, ["run", "deployed-task", "features.featurize", "--x", "1"])
    assert deployed.exit_code == 2
    assert "needs a gateway" in deployed.output
    missing = runner.invoke(main, ["run", "nothing.py", "main"])
    assert missing.exit_code == 2
    assert "FILE 'nothing.py' is not a file" in missing.output
