"""Values on the wire: how one input or output crosses an action boundary.

A value whose annotated type is JSON-friendly travels as JSON made by pydantic's `TypeAdapter` of that type, so the
CLI, the UI and `flyte.remote` can show and pass it; any other value travels as cloudpickle bytes, marked as
such. Payloads over `INLINE_LIMIT` go to the blob store and travel as a reference. Local mode encodes and decodes
at every boundary too, so a value that would not survive remote mode fails locally with the same message.

A codec is built once per parameter when a task is defined; the per-call work is one dump and one validate.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import decimal
import enum
import hashlib
import pathlib
import sys
import types
import typing
import uuid
import warnings
from typing import Any

import cloudpickle
import pydantic
import pydantic_core
from pydantic import ConfigDict, TypeAdapter

from ._wire import EncodedValue as EncodedValue
from ._wire import ValueKind as ValueKind
from .errors import ValueEncodingError

INLINE_LIMIT = 64 * 1024
"""Encoded values larger than this many bytes are stored as blobs and travel by reference."""

_SCALARS: frozenset[object] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        None,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
        pathlib.Path,
    }
)
_CONTAINERS: frozenset[object] = frozenset(
    {list, dict, tuple, set, frozenset, typing.Union, types.UnionType, typing.Literal, typing.Annotated}
)
_NEEDS_OWN_CONFIG = (pydantic.BaseModel,)


def value_bytes(value: EncodedValue) -> bytes:
    """A value's encoded bytes: inline, or fetched from the blob store."""
    if value.payload is not None:
        return value.payload
    assert value.ref is not None
    return _blobs.get(value.ref)


def is_json_friendly(annotation: object) -> bool:
    """Whether values of this type round-trip through JSON without losing what they are."""
    if annotation in _SCALARS:
        return True
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return True
        if issubclass(annotation, pydantic.BaseModel):
            return True
        if dataclasses.is_dataclass(annotation):
            hints = _hints(annotation)
            return all(is_json_friendly(hints.get(f.name, Any)) for f in dataclasses.fields(annotation))
        if typing.is_typeddict(annotation):
            return all(is_json_friendly(t) for t in _hints(annotation).values())
        return False
    origin = typing.get_origin(annotation)
    if origin in _CONTAINERS:
        if origin is typing.Literal:
            return True
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return is_json_friendly(args[0])
        if origin is dict and args and args[0] not in (str, int):
            return False
        return all(a is Ellipsis or is_json_friendly(a) for a in args)
    return False


def _hints(obj: object) -> dict[str, Any]:
    return type_hints(obj, f"{getattr(obj, '__qualname__', obj)!s}")


def type_hints(obj: object, where: str) -> dict[str, Any]:
    """`obj`'s resolved annotations. A hint that cannot be resolved (a name not defined, or defined only
    under `TYPE_CHECKING`) becomes `Any`, and so pickled, with a warning naming it: the others keep their types."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        pass
    raw: dict[str, Any] = dict(getattr(obj, "__annotations__", None) or {})
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    namespace: dict[str, Any] = dict(getattr(obj, "__globals__", None) or getattr(module, "__dict__", {}))
    hints: dict[str, Any] = {}
    for name, annotation in raw.items():
        try:
            probe = types.SimpleNamespace(
                __annotations__={name: annotation}, __module__=getattr(obj, "__module__", None)
            )
            hints[name] = typing.get_type_hints(probe, globalns=namespace)[name]
        except Exception as error:
            warnings.warn(
                f"the type hint of {name!r} in {where} ({annotation!r}) cannot be resolved ({error}); "
                "its values travel pickled instead of typed",
                stacklevel=4,
            )
            hints[name] = Any
    return hints


class ValueCodec:
    """Encodes and decodes the values of one annotated type; built once, used on every call."""

    __slots__ = ("_adapter", "annotation", "kind", "where")

    def __init__(self, annotation: object, where: str):
        self.annotation = annotation
        self.where = where
        """What the value is, for messages: "input 'x' of task env.t"."""
        self._adapter: TypeAdapter[Any] | None = None
        self.kind: ValueKind = "pickle"
        if is_json_friendly(annotation):
            try:
                self._adapter = _adapter_for(annotation)
                self.kind = "json"
            except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError):
                self._adapter = None

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema of a JSON-travelling type ({} when pydantic cannot describe it); None for pickles."""
        if self._adapter is None:
            return None
        try:
            return self._adapter.json_schema()
        except (pydantic.PydanticUserError, pydantic_core.PydanticSerializationError, TypeError, ValueError):
            return {}

    def encode(self, value: object) -> EncodedValue:
        if self._adapter is not None:
            value = self._as_model(value)
            try:
                data = self._adapter.dump_json(value, warnings="error")
            except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as e:
                raise ValueEncodingError(
                    f"{self.where} expects {_type_name(self.annotation)}, got {type(value).__name__} "
                    f"{_preview(value)}: {_first_line(e)}"
                ) from None
        else:
            try:
                data = cloudpickle.dumps(value)
            except Exception as e:
                raise ValueEncodingError(
                    f"{self.where} cannot be pickled to cross an action boundary "
                    f"({type(value).__name__}): {_first_line(e)}"
                ) from None
        return encoded(self.kind, data)

    def _as_model(self, value: object) -> object:
        """A dict given for a pydantic-model parameter, validated into the model (Flyte 2 accepts both), and
        the other values a model coerces itself."""
        annotation = self.annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
        if not is_model:
            return value
        # A model may take other values for itself (flyte.io.DataFrame takes a pandas or pyarrow frame).
        coerce = getattr(annotation, "_coerce_input", None)
        if coerce is not None:
            value = coerce(value)
        if not isinstance(value, dict):
            return value
        assert self._adapter is not None
        try:
            return self._adapter.validate_python(value)
        except pydantic.ValidationError as e:
            raise ValueEncodingError(f"{self.where} expects {_type_name(annotation)}: {_first_line(e)}") from None

    def decode(self, value: EncodedValue) -> Any:
        if value.kind == "pickle":
            if self.kind == "json":
                # Unpickling runs the sender's code: a type with a JSON form is never taken as a pickle.
                raise ValueEncodingError(
                    f"{self.where} expects {_type_name(self.annotation)}, which travels as JSON; "
                    "refusing a pickled value"
                )
            return cloudpickle.loads(value_bytes(value))
        data = value_bytes(value)
        if self._adapter is None:
            # JSON produced elsewhere (CLI, UI, another SDK) for a parameter we pickle: trust the JSON.
            return TypeAdapter(Any).validate_json(data)
        try:
            return self._adapter.validate_json(data)
        except pydantic.ValidationError as e:
            raise ValueEncodingError(f"{self.where} expects {_type_name(self.annotation)}: {_first_line(e)}") from None


def encoded(kind: ValueKind, data: bytes) -> EncodedValue:
    """Wrap encoded bytes, moving large payloads to the blob store."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > INLINE_LIMIT:
        return EncodedValue(kind, digest, ref=_blobs.put(data))
    return EncodedValue(kind, digest, payload=data)


class BlobBackend:
    """Where out-of-line payloads go: the local blob directory, or (in remote mode) the gateway's blob store."""

    remote = False

    def put(self, data: bytes) -> str:
        from .io._blobs import put_bytes

        return put_bytes(data)

    def get(self, ref: str) -> bytes:
        from .io._blobs import get_bytes

        return get_bytes(ref)

    def put_file(self, path: pathlib.Path) -> str:
        """`put` of a file's content; a backend that can streams it rather than reading it into memory."""
        return self.put(path.read_bytes())

    def download(self, ref: str, write: typing.Callable[[bytes], object], offset: int = 0) -> None:
        """Pass the payload `ref` names to `write`, from byte `offset` on (a broken download resumes there); a
        backend that can streams it, a chunk per call."""
        write(self.get(ref)[offset:])


_LOCAL = BlobBackend()
_backend: contextvars.ContextVar[BlobBackend | None] = contextvars.ContextVar("flyte_blobs", default=None)


class _Blobs:
    """The blob backend of the current context: a worker sets the gateway's; local code keeps the directory."""

    def put(self, data: bytes) -> str:
        return (_backend.get() or _LOCAL).put(data)

    def get(self, ref: str) -> bytes:
        return (_backend.get() or _LOCAL).get(ref)


_blobs = _Blobs()


def current_blob_backend() -> BlobBackend | None:
    """The backend this context set, if any (None: the local directory)."""
    return _backend.get()


def use_blob_backend(backend: BlobBackend) -> contextvars.Token[BlobBackend | None]:
    """Use `backend` in this context (and the tasks and threads it starts); reset with the returned token."""
    return _backend.set(backend)


def reset_blob_backend(token: contextvars.Token[BlobBackend | None]) -> None:
    _backend.reset(token)


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def _adapter_for(annotation: Any) -> TypeAdapter[Any]:
    try:
        return _ADAPTERS[annotation]
    except (KeyError, TypeError):
        pass
    adapter: TypeAdapter[Any]
    try:
        adapter = TypeAdapter(annotation, config=ConfigDict(ser_json_inf_nan="constants"))
    except pydantic.PydanticUserError:
        # Models, dataclasses and TypedDicts carry their own config.
        adapter = TypeAdapter(annotation)
    with contextlib.suppress(TypeError):  # unhashable annotations are simply not memoised
        _ADAPTERS[annotation] = adapter
    return adapter


def _type_name(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = " ".join(lines[:3])
    return detail if len(detail) <= 300 else detail[:297] + "..."
