"""Error records the platform builds from the `flyte.errors` classes (`Cls.info`) and retryability read off a
record's class (`flyte.errors.is_retryable`)."""

from __future__ import annotations

import inspect

import pytest

import flyte.errors
from flyte._wire import ErrorInfo
from flyte.errors import from_info

CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(flyte.errors, inspect.isclass)
        if issubclass(cls, flyte.errors.BaseRuntimeError) and not cls.__name__.startswith("_")
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_a_record_built_from_a_class_names_it_and_comes_back_as_it(cls: type[flyte.errors.BaseRuntimeError]) -> None:
    record = cls.info("what happened", worker="east")
    assert (record.error_type, record.code, record.kind, record.message) == (
        cls.__name__,
        cls.__name__,
        cls.kind,
        "what happened",
    )
    back = from_info(ErrorInfo.model_validate_json(record.model_dump_json()))
    assert isinstance(back, cls)
    assert (back.kind, back.message, back.worker) == (cls.kind, "what happened", "east")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_retryability_is_the_classs(cls: type[flyte.errors.BaseRuntimeError]) -> None:
    assert flyte.errors.is_retryable(cls.__name__) is cls.retryable


def test_the_platforms_own_failures_keep_their_codes_and_kinds() -> None:
    never_fits = flyte.errors.NonRecoverableError.info("needs 64 cpu", code="NeverFits")
    assert (never_fits.error_type, never_fits.code, never_fits.kind) == ("NonRecoverableError", "NeverFits", "user")
    lost = flyte.errors.RuntimeSystemError.info("the cluster east was lost", code="ClusterLost")
    assert (lost.error_type, lost.code, lost.kind) == ("RuntimeSystemError", "ClusterLost", "system")
    assert flyte.errors.is_retryable(lost.error_type)
    assert not flyte.errors.is_retryable(never_fits.error_type)


def test_the_classes_the_server_refused_to_retry_are_still_not_retryable() -> None:
    # The set the gateway spelled as strings before retryability was read off the class.
    for name in (
        "NonRecoverableError",
        "ActionAbortedError",
        "ValueEncodingError",
        "InlineIOMaxBytesBreached",
        "RemoteTaskNotFoundError",
        "DeploymentError",
        "RetriesExhaustedError",
    ):
        assert not flyte.errors.is_retryable(name)


def test_a_class_name_this_sdk_does_not_know_is_retryable_like_its_bases() -> None:
    assert flyte.errors.is_retryable("SomeNewerSdksError")


def test_a_long_message_is_cut_to_what_the_wire_takes() -> None:
    assert len(flyte.errors.RuntimeUserError.info("x" * 100_000).message) == 65_536
