"""Values checked against their declared types at the gateway's edge, before anything is stored or run.

A task's deployed spec says, per input and for its output, whether the declared type has a JSON form (`kind`).
A value of such a type is only ever JSON: a `pickle` value for it is refused, because a worker that unpickled it
would run whatever code the sender put in it. A `pickle` value is accepted only where the type has no JSON form
(the sender is then trusted with code in that task's project, as with its code bundle). Every value's digest is
checked against its bytes, so a value cannot claim another value's identity (and with it another value's cache
entry); inline values have a size limit; a blob reference names its own digest.

The same check runs for every way a value arrives: run creation, child submission (HTTP or a worker's socket),
and a reported result.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping

from flyte._wire import TaskSpec, WireValue
from gateway._domain_errors import Invalid, TooLarge

INLINE_VALUE_LIMIT = 1024 * 1024
"""The largest value a request may carry inline; larger values travel as blobs."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


# The declared types whose JSON the gateway can check without the task's code; others are checked by the worker.
_SCALAR_CHECKS: dict[str, Callable[[object], bool]] = {
    "int": _is_int,
    "float": _is_number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
}


def check_inputs(inputs: Mapping[str, WireValue], spec: TaskSpec) -> None:
    """Refuse (`Invalid`, naming the input and its type) a value its declared type cannot take."""
    declared = spec.parameters
    inline = 0
    for name, value in inputs.items():
        param = declared[name]
        inline += _check(value, param.kind, param.type, f"input {name!r} of {spec.name} (declared {param.type})")
    _check_task_limit(inline, spec, "inputs")


def check_output(output: WireValue, spec: TaskSpec) -> None:
    """Refuse a reported result its task's declared output type cannot take."""
    inline = _check(output, spec.output_kind, spec.output, f"the output of {spec.name} (declared {spec.output})")
    _check_task_limit(inline, spec, "output")


def _check_task_limit(inline: int, spec: TaskSpec, what: str) -> None:
    # The SDK enforces the task's own limit too (InlineIOMaxBytesBreached); this holds for any sender.
    if inline > spec.max_inline_io_bytes:
        raise TooLarge(
            f"the {what} of {spec.name} are {inline} bytes inline; the task's max_inline_io_bytes is "
            f"{spec.max_inline_io_bytes}",
            code="inline_io_too_large",
        )


def _check(value: WireValue, kind: str, type_text: str, what: str) -> int:
    """Refuse a value its declared kind and type cannot take; returns its inline size in bytes."""
    if value.kind == "pickle" and kind == "json":
        raise Invalid(
            f"{what} has a JSON form, so it is only accepted as JSON, not pickled", code="value_kind_mismatch"
        )
    if value.ref is not None:
        if value.json_text is not None or value.pickle_b64 is not None:
            raise Invalid(f"{what} is both a blob reference and inline; send one", code="invalid_value")
        if value.ref != f"blob:{value.digest}":
            raise Invalid(
                f"{what}: a blob reference is blob:<its digest>, not {value.ref[:80]!r}", code="invalid_value"
            )
        return 0
    data = _inline_bytes(value, what)
    if len(data) > INLINE_VALUE_LIMIT:
        raise TooLarge(
            f"{what} is {len(data)} bytes inline; the limit is {INLINE_VALUE_LIMIT}: upload it as a blob",
            code="value_too_large",
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != value.digest:
        raise Invalid(
            f"{what}: the digest {value.digest} is not the sha256 of its bytes ({actual})", code="digest_mismatch"
        )
    if value.kind == "json":
        _check_json(data, type_text, what)
    return len(data)


def _inline_bytes(value: WireValue, what: str) -> bytes:
    if value.kind == "json":
        if value.json_text is None or value.pickle_b64 is not None:
            raise Invalid(f"{what} is a json value: send it as json_text", code="invalid_value")
        return value.json_text.encode()
    if value.pickle_b64 is None or value.json_text is not None:
        raise Invalid(f"{what} is a pickle value: send it as pickle_b64", code="invalid_value")
    try:
        return base64.b64decode(value.pickle_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{what}: pickle_b64 is not base64", code="invalid_value") from None


def _check_json(data: bytes, type_text: str, what: str) -> None:
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid(f"{what}: json_text is not JSON", code="invalid_value") from None
    except RecursionError:
        raise Invalid(f"{what}: json_text is nested too deeply", code="invalid_value") from None
    check = _SCALAR_CHECKS.get(type_text)
    if check is not None and not check(parsed):
        raise Invalid(f"{what}: {data[:40]!r} is not a {type_text}", code="invalid_value")
