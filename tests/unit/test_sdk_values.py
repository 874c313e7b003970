"""Local mode: every value crosses an action boundary through the wire encoding (JSON when it can, pickle if not)."""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from programs import write_and_import
from pydantic import BaseModel

import flyte
import flyte.errors
from flyte._codec import INLINE_LIMIT, value_bytes
from flyte._wire import Phase
from flyte.io import Dir, File

env = flyte.TaskEnvironment("sdk_values")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Item:
    name: str
    qty: int
    tags: list[str] = field(default_factory=list)


class Point(BaseModel):
    x: float
    y: float


class Opaque:
    """Not JSON-friendly: travels pickled."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.label == self.label

    def __hash__(self) -> int:
        return hash(self.label)


@env.task
def takes_int(x: int) -> int:
    return x * 2


@env.task
def takes_anything(thing) -> str:  # type: ignore[no-untyped-def]  # un-annotated on purpose: pickled
    return type(thing).__name__


@env.task
def returns_wrong_type() -> int:
    return "not a number"  # type: ignore[return-value]


@env.task
def passes_wrong_type_to_child() -> int:
    return takes_int("abc")  # type: ignore[arg-type]


@env.task
def passes_a_lock_to_child() -> str:
    return takes_anything(threading.Lock())


@env.task
def echo_item(item: Item) -> Item:
    return item


@env.task
def echo_point(point: Point) -> Point:
    return point


@env.task
def echo_when(when: datetime.datetime) -> datetime.datetime:
    return when


@env.task
def echo_color(color: Color) -> Color:
    return color


@env.task
def echo_nested(data: dict[str, list[int]]) -> dict[str, list[int]]:
    return data


@env.task
def echo_opaque(value: Opaque) -> Opaque:
    return value


@env.task
def mutate(values: list[int]) -> list[int]:
    values.append(99)
    return values


@env.task
def parent_round_trips() -> dict[str, str]:
    """Values a parent sends and gets back come out with their own types."""
    item = echo_item(Item("bolt", 3, ["m4"]))
    point = echo_point(Point(x=1.5, y=-2))
    when = echo_when(datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC))
    color = echo_color(Color.BLUE)
    nested = echo_nested({"a": [1, 2], "b": []})
    opaque = echo_opaque(Opaque("o"))
    assert item == Item("bolt", 3, ["m4"])
    assert point == Point(x=1.5, y=-2)
    assert when == datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    assert color is Color.BLUE
    assert nested == {"a": [1, 2], "b": []}
    assert opaque == Opaque("o")
    values = {"item": item, "point": point, "when": when, "color": color, "nested": nested, "opaque": opaque}
    return {name: type(value).__name__ for name, value in values.items()}


@env.task
def parent_keeps_its_list() -> list[list[int]]:
    mine = [1, 2]
    theirs = mutate(mine)
    return [mine, theirs]


@env.task
def echo_text(text: str) -> str:
    return text


@env.task(max_inline_io_bytes=100)
def small_inputs_only(text: str) -> int:
    return len(text)


@env.task
def reads_file(f: File) -> str:
    with f.open_sync("r") as fh:
        text: str = fh.read()
    return text.upper()


@env.task
def writes_file(text: str) -> File:
    out = File.new_remote("out.txt")
    with out.open_sync("w") as fh:
        fh.write(text)
    return out


@env.task
def file_pipeline(f: File) -> File:
    return writes_file(reads_file(f))


@env.task
async def lists_dir(d: Dir) -> list[str]:
    return [f.name or "" async for f in d.walk()]


@env.task
async def dir_pipeline(d: Dir) -> list[str]:
    return await lists_dir(d)


# --- values that cannot cross ------------------------------------------------------------------------------


def test_wrong_type_for_an_annotated_input_is_refused_at_run() -> None:
    with pytest.raises(flyte.errors.ValueEncodingError) as info:
        flyte.run(takes_int, "abc")  # type: ignore[arg-type]
    message = str(info.value)
    assert "input 'x'" in message
    assert "sdk_values.takes_int" in message
    assert "int" in message


def test_wrong_type_passed_to_a_child_fails_the_parent() -> None:
    run = flyte.run(passes_wrong_type_to_child)
    assert run.phase is Phase.FAILED
    with pytest.raises(flyte.errors.ValueEncodingError, match=r"input 'x' of task sdk_values\.takes_int"):
        run.wait()
    assert not any(a.task == "sdk_values.takes_int" for a in run._state.actions.values())


def test_unpicklable_value_for_an_unannotated_input_is_refused() -> None:
    run = flyte.run(passes_a_lock_to_child)
    with pytest.raises(flyte.errors.ValueEncodingError) as info:
        run.wait()
    message = str(info.value)
    assert "input 'thing' of task sdk_values.takes_anything" in message
    assert "pickle" in message
    assert "lock" in message.lower()


def test_unpicklable_value_is_refused_at_run() -> None:
    with pytest.raises(flyte.errors.ValueEncodingError, match=r"input 'thing' of task sdk_values\.takes_anything"):
        flyte.run(takes_anything, threading.Lock())


def test_output_not_matching_its_annotation_fails_the_task() -> None:
    run = flyte.run(returns_wrong_type)
    with pytest.raises(flyte.errors.ValueEncodingError, match=r"output of task sdk_values\.returns_wrong_type"):
        run.wait()


# --- values that can ---------------------------------------------------------------------------------------


def test_json_friendly_and_pickled_values_round_trip_between_tasks() -> None:
    types = flyte.run(parent_round_trips).outputs()[0]
    assert types == {
        "item": "Item",
        "point": "Point",
        "when": "datetime",
        "color": "Color",
        "nested": "dict",
        "opaque": "Opaque",
    }


@pytest.mark.parametrize(
    ("task", "value", "as_json"),
    [
        (echo_item, Item("nut", 2, ["a"]), {"name": "nut", "qty": 2, "tags": ["a"]}),
        (echo_point, Point(x=1, y=2), {"x": 1.0, "y": 2.0}),
        (echo_when, datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "2024-01-02T03:04:05Z"),
        (echo_color, Color.RED, "red"),
        (echo_nested, {"k": [1]}, {"k": [1]}),
    ],
)
def test_json_friendly_values_travel_as_json(task: Any, value: Any, as_json: Any) -> None:
    run = flyte.run(task, value)
    assert run.outputs()[0] == value
    (encoded,) = run._state.inputs.values.values()
    assert encoded.kind == "json"
    assert json.loads(value_bytes(encoded)) == as_json
    assert run._state.output is not None
    assert run._state.output.kind == "json"


def test_other_values_travel_pickled() -> None:
    run = flyte.run(echo_opaque, Opaque("x"))
    assert run.outputs()[0] == Opaque("x")
    assert run._state.inputs.values["value"].kind == "pickle"


def test_a_child_gets_a_copy_not_the_parents_object() -> None:
    mine, theirs = flyte.run(parent_keeps_its_list).outputs()[0]
    assert mine == [1, 2]
    assert theirs == [1, 2, 99]


def test_large_values_travel_by_reference() -> None:
    text = "x" * (INLINE_LIMIT + 10)
    run = flyte.run(echo_text, text)
    assert run.outputs()[0] == text
    assert run._state.output is not None
    assert run._state.output.payload is None
    assert run._state.output.ref is not None


def test_inputs_over_max_inline_io_bytes_fail() -> None:
    run = flyte.run(small_inputs_only, "y" * 200)
    with pytest.raises(flyte.errors.InlineIOMaxBytesBreached, match="max_inline_io_bytes"):
        run.wait()
    assert flyte.run(small_inputs_only, "short").outputs()[0] == 5


# --- files and directories ---------------------------------------------------------------------------------


def test_files_pass_between_tasks(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello files")
    run = flyte.run(file_pipeline, File.from_local_sync(source))
    result = run.outputs()[0]
    assert isinstance(result, File)
    with result.open_sync("r") as fh:
        assert fh.read() == "HELLO FILES"
    assert run._state.inputs.values["f"].kind == "json"


def test_dirs_pass_between_tasks(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "b.txt").write_text("b")
    (tree / "sub" / "a.txt").write_text("a")
    run = flyte.run(dir_pipeline, Dir.from_local_sync(tree))
    assert run.outputs()[0] == ["b.txt", "a.txt"]


def test_local_runs_after_a_remote_attempt_keep_large_values_local() -> None:
    flyte.init(endpoint="http://127.0.0.1:9", insecure=True)  # nothing listens on the discard port
    with contextlib.suppress(Exception):
        flyte.run(echo_text, "remote attempt")
    flyte.init()
    text = "z" * (INLINE_LIMIT + 10)
    assert flyte.run(echo_text, text).outputs()[0] == text


def test_an_unresolvable_hint_pickles_only_its_own_value(tmp_path: Path) -> None:
    source = """
from __future__ import annotations
from typing import TYPE_CHECKING
import flyte
if TYPE_CHECKING:
    from decimal import Decimal
env = flyte.TaskEnvironment("hints")
@env.task
async def t(count: int, price: Decimal) -> int:
    return count
"""
    with pytest.warns(UserWarning, match=r"'price' in task hints\.t \('Decimal'\) cannot be resolved"):
        module = write_and_import(tmp_path, "unresolvable_hints", source)
    parameters = module.t.interface.by_name
    assert parameters["count"].codec.kind == "json"  # the resolvable hint keeps its type
    assert parameters["price"].codec.kind == "pickle"
