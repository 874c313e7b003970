"""The wire's shared shapes: the attempt key, and the typed task settings that keep the JSON they always had."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from flyte._wire import (
    FROM_AGENT,
    FROM_POOL_WORKER,
    FROM_WORKER,
    ON_SPARE_SOCKET,
    TO_AGENT,
    TO_POOL_WORKER,
    AbortMessage,
    AgentHeartbeat,
    Assignment,
    AttemptKey,
    PoolAbort,
    PoolDone,
    PoolHello,
    PoolLog,
    SpareHello,
    TaskOverrides,
    TaskSpec,
    WorkerUp,
    WorkerWatch,
)


def test_an_attempt_key_formats_and_parses_back() -> None:
    key = AttemptKey("r1", "a0", 3)
    assert str(key) == "r1/a0/3"
    assert AttemptKey.parse("r1/a0/3") == key
    assert AttemptKey.parse(str(key)).attempt == 3


@pytest.mark.parametrize("bad", ["", "r1", "r1/a0", "r1/a0/x", "r1//3", "/a0/3", "r1/a0/-1"])
def test_a_malformed_attempt_key_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="run/action/attempt"):
        AttemptKey.parse(bad)


_SPEC = {
    "name": "env.train",
    "short_name": "train",
    "signature": "()",
    "interface_digest": "0123456789abcdef",
    "resources": {
        "cpu": {"request": 0.5, "limit": 1.0},
        "memory": {"request": 1024, "limit": 2048},
        "gpu": {"count": 1},
    },
    "backoff": {"base": 2.0, "cap": 30.0},
    "cache": {"behavior": "auto", "version_override": None, "ignored_inputs": ["x"], "salt": "", "version": "v1"},
    "reusable": {"min_replicas": 0, "max_replicas": 2, "concurrency": 4, "idle_ttl": None},
    "placement": {"clusters": ["east"], "spread": True},
}


def test_typed_settings_keep_the_json_they_had() -> None:
    """Only the fields a sender set travel: a stored spec reads back and writes out byte for byte."""
    text = TaskSpec.model_validate(_SPEC).model_dump_json()
    again = TaskSpec.model_validate_json(text)
    assert again.model_dump_json() == text
    dumped = json.loads(text)
    for field in ("resources", "backoff", "cache", "reusable", "placement"):
        assert dumped[field] == _SPEC[field]
    # Backoff and cache were unchecked mappings: their keys keep the sender's order (a spec's digest depends on it).
    assert '"backoff":{"base":2.0,"cap":30.0}' in text


def test_unset_settings_are_empty_mappings_as_before() -> None:
    spec = TaskSpec.model_validate({key: _SPEC[key] for key in ("name", "short_name", "signature", "interface_digest")})
    dumped = json.loads(spec.model_dump_json())
    assert (dumped["resources"], dumped["backoff"], dumped["cache"]) == ({}, {}, {})
    assert dumped["reusable"] is None
    assert dumped["placement"] is None
    assert not spec.cache.enabled
    assert spec.backoff.delay(1) == 1.0
    assert spec.backoff.delay(10) == 60.0


def test_typed_settings_read_by_attribute() -> None:
    spec = TaskSpec.model_validate(_SPEC)
    assert spec.resources.request("cpu") == 0.5
    assert spec.resources.limit("memory") == 2048
    assert spec.resources.request("memory") == 1024
    assert spec.resources.limit("cpu") == 1.0
    assert spec.backoff.delay(2) == 4.0
    assert spec.cache.enabled
    assert spec.cache.version == "v1"
    assert spec.reusable is not None
    assert spec.reusable.concurrency == 4
    assert spec.placement is not None
    assert spec.placement.clusters == ["east"]
    assert spec.placement.prefer_warm


def test_an_assignment_carries_the_same_resources_json() -> None:
    resources = {"memory": {"request": 64, "limit": 128}, "shm": "auto"}
    assignment = Assignment.model_validate(
        {
            **dict.fromkeys(("run", "cluster", "project", "domain"), "r1"),
            "action": "a0",
            "attempt": 1,
            "epoch": 0,
            "task": "env.train",
            "version": "v1",
            "bundle_digest": "0" * 64,
            "token": "t",
            "resources": resources,
        }
    )
    assert json.loads(assignment.model_dump_json())["resources"] == resources
    assert assignment.resources.limit("cpu") is None
    assert assignment.resources.shm == "auto"


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"resources": {"cpu": {"request": "abc"}}}, "resources.cpu.request"),
        ({"resources": {"cpu": {"request": 2.0, "limit": 1.0}}}, "resources.cpu"),
        ({"reusable": {"min_replicas": 3, "max_replicas": 2, "concurrency": 1}}, "reusable"),
        ({"placement": {"spread": "yes"}}, "placement.spread"),
    ],
)
def test_a_bad_override_names_its_field(overrides: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskOverrides.model_validate(overrides)
    assert ".".join(str(part) for part in caught.value.errors()[0]["loc"]).startswith(where)


def test_each_conversation_tells_its_messages_apart_by_type() -> None:
    assert isinstance(FROM_AGENT.validate_json('{"type": "heartbeat", "running": 2}'), AgentHeartbeat)
    assert isinstance(TO_AGENT.validate_json('{"type": "abort", "keys": ["r1/a0/1"]}'), AbortMessage)
    report = FROM_WORKER.validate_json('{"type": "watch", "run": "r1", "parent": "a0"}')
    assert isinstance(report, WorkerWatch)
    with pytest.raises(ValidationError) as caught:
        FROM_AGENT.validate_json('{"type": "assign", "assignments": []}')
    assert caught.value.errors()[0]["type"] == "union_tag_invalid"


@pytest.mark.parametrize(
    ("line", "shape"),
    [
        ({"log": "r1/a0/1", "stream": "stderr", "text": "boom"}, PoolLog),
        ({"done": "r1/a0/1", "reported": 1_700_000_000_000_000_000}, PoolDone),
        ({"done": "r1/a0/1"}, PoolDone),
    ],
)
def test_pool_lines_as_workers_have_always_sent_them(line: dict[str, object], shape: type) -> None:
    """A pool worker runs its image's SDK, maybe an older one: its lines (json.dumps, spaces and all) still parse."""
    message = FROM_POOL_WORKER.validate_json(json.dumps(line))
    assert isinstance(message, shape)
    assert {**json.loads(message.model_dump_json()), **line} == json.loads(message.model_dump_json())


def test_the_agent_sends_a_pool_worker_an_assignment_or_an_abort() -> None:
    assert isinstance(TO_POOL_WORKER.validate_json('{"abort": "r1/a0/1"}'), PoolAbort)
    assert json.loads(PoolAbort(abort="r1/a0/1").model_dump_json()) == {"abort": "r1/a0/1"}
    hello = PoolHello.model_validate_json('{"hello": 42, "worker": "w1", "secret": "s"}')
    assert (hello.hello, hello.worker, hello.secret) == (42, "w1", "s")
    assert isinstance(ON_SPARE_SOCKET.validate_json('{"up": 7}'), WorkerUp)
    assert isinstance(ON_SPARE_SOCKET.validate_json('{"hello": 7}'), SpareHello)
    with pytest.raises(ValidationError):
        ON_SPARE_SOCKET.validate_json("{}")


def test_a_dump_is_the_callers_to_change() -> None:
    """A spec's dump is made once and kept (specs are frozen); what a caller gets is a copy."""
    spec = TaskSpec.model_validate(_SPEC)
    first = spec.model_dump()
    first["resources"]["cpu"]["request"] = 99.0
    first["placement"]["clusters"].append("west")
    again = spec.model_dump()
    assert again["resources"]["cpu"]["request"] == 0.5
    assert again["placement"]["clusters"] == ["east"]


def test_specs_are_equal_by_content() -> None:
    """Neither the kept dump nor the sender's key order makes two equal settings differ."""
    one, two = TaskSpec.model_validate(_SPEC), TaskSpec.model_validate(_SPEC)
    one.model_dump_json()
    assert one == two
    assert hash(one.resources) == hash(two.resources)
    reordered = TaskSpec.model_validate({**_SPEC, "backoff": {"cap": 30.0, "base": 2.0}})
    assert reordered.backoff == one.backoff
    assert '"backoff":{"cap":30.0,"base":2.0}' in reordered.model_dump_json()
    assert one.resources != TaskSpec.model_validate({**_SPEC, "resources": {}}).resources


# What the wire of dict-typed settings (before the typed models) wrote for these specs and overrides, byte for byte.
_GOLDEN_SPECS = [
    (
        '{"name":"env.train","short_name":"train","signature":"()","interface_digest":"0123456789abcdef",'
        '"inputs":[],"output":"None","output_kind":"json","output_schema":null,"is_async":true,"resources'
        '":{"cpu":{"request":1.0,"limit":2.0},"memory":{"request":1024,"limit":2048},"gpu":{"type":"A100"'
        ',"count":1},"disk":10,"shm":"auto"},"retries":0,"backoff":{"base":2.0,"cap":30.0,"factor":1.5},"'
        'timeout_seconds":null,"max_queued_seconds":null,"cache":{"behavior":"auto","version_override":nu'
        'll,"ignored_inputs":["x"],"salt":"s","version":"v1"},"reusable":{"min_replicas":0,"max_replicas"'
        ':2,"concurrency":4,"idle_ttl":null,"scaledown_ttl":5.0},"placement":{"regions":[],"clusters":["e'
        'ast"],"labels":{"a":"b"},"spread":true,"prefer_warm":false},"queue":null,"image":null,"image_spe'
        'c":null,"env_vars":{},"secrets":[],"max_inline_io_bytes":10485760,"source_root":null}'
    ),
    (
        '{"name":"env.train","short_name":"train","signature":"()","interface_digest":"0123456789abcdef",'
        '"inputs":[],"output":"None","output_kind":"json","output_schema":null,"is_async":true,"resources'
        '":{"memory":{"request":64,"limit":128}},"retries":0,"backoff":{},"timeout_seconds":null,"max_que'
        'ued_seconds":null,"cache":{},"reusable":null,"placement":null,"queue":null,"image":null,"image_s'
        'pec":null,"env_vars":{},"secrets":[],"max_inline_io_bytes":10485760,"source_root":null}'
    ),
]
_GOLDEN_OVERRIDES = (
    '{"resources":{"cpu":{"request":1.0,"limit":1.0}},"retries":2,"timeout_seconds":null,"max_queued_'
    'seconds":null,"reusable":{"min_replicas":1,"max_replicas":1,"concurrency":1},"reusable_off":fals'
    'e,"placement":{"avoid":["x"]},"env_vars":null}'
)


@pytest.mark.parametrize("text", _GOLDEN_SPECS)
def test_a_spec_stored_before_the_typed_settings_writes_back_the_same_bytes(text: str) -> None:
    assert TaskSpec.model_validate_json(text).model_dump_json() == text
    assert TaskSpec.model_validate(json.loads(text)).model_dump_json() == text


def test_overrides_sent_before_the_typed_settings_write_back_the_same_bytes() -> None:
    assert TaskOverrides.model_validate_json(_GOLDEN_OVERRIDES).model_dump_json() == _GOLDEN_OVERRIDES
