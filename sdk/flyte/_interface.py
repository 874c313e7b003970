"""A task's interface: its parameters and outputs, inspected once when the task is defined.

Everything a call needs (binding arguments to names, a codec per input and for the output, the interface digest
that is part of the task's identity) is computed here once, so a call does no signature inspection.
"""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._codec import EncodedValue, ValueCodec, type_hints

_MISSING: Any = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class EncodedInputs:
    """A call's inputs in wire form, with one digest over all of them (part of the child's name)."""

    values: Mapping[str, EncodedValue]
    digest: str

    @property
    def size(self) -> int:
        return sum(v.size for v in self.values.values())

    @classmethod
    def of(cls, values: Mapping[str, EncodedValue]) -> EncodedInputs:
        h = hashlib.sha256()
        for name, value in values.items():
            h.update(name.encode())
            h.update(value.digest.encode())
        return cls(values, h.hexdigest())


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    annotation: Any
    default: Any
    codec: ValueCodec

    @property
    def required(self) -> bool:
        return self.default is _MISSING


class TaskInterface:
    """The inputs and outputs of one task function."""

    def __init__(self, func: Callable[..., Any], qualified_name: str):
        signature = inspect.signature(func)
        hints = type_hints(func, f"task {qualified_name}")
        params: list[Parameter] = []
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"task {qualified_name}: *{p.name} parameters cannot cross an action boundary; name every parameter"
                )
            annotation = hints.get(p.name, Any)
            codec = ValueCodec(annotation, f"input '{p.name}' of task {qualified_name}")
            params.append(Parameter(p.name, annotation, p.default, codec))
        self.task_name = qualified_name
        self.parameters: tuple[Parameter, ...] = tuple(params)
        self.by_name: dict[str, Parameter] = {p.name: p for p in params}
        self._positional_only = frozenset(p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY)
        returns: Any = hints.get("return", Any)
        if "return" not in hints and signature.return_annotation is not _MISSING:
            raw = signature.return_annotation
            returns = type(None) if raw is None else (Any if isinstance(raw, str) else raw)
        self.returns = returns
        self.has_output = returns is not None and returns is not type(None)
        self.output_codec = ValueCodec(returns, f"output of task {qualified_name}")
        origin, args = typing.get_origin(returns), typing.get_args(returns)
        self.output_arity = len(args) if origin is tuple and args and args[-1] is not Ellipsis else 1
        self.signature_text = self._render(func.__name__)
        self.digest = hashlib.sha256(self.signature_text.encode()).hexdigest()[:16]

    def _render(self, func_name: str) -> str:
        def name(t: Any) -> str:
            return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")

        parts = []
        for p in self.parameters:
            text = f"{p.name}: {name(p.annotation)}"
            if not p.required:
                text += f" = {p.default!r}"
            parts.append(text)
        returns = "None" if not self.has_output else name(self.returns)
        return f"{func_name}({', '.join(parts)}) -> {returns}"

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments by parameter name, defaults filled in; a TypeError like Python's when they do not fit."""
        if len(args) > len(self.parameters):
            raise TypeError(f"{self.task_name} takes {len(self.parameters)} arguments but {len(args)} were given")
        bound: dict[str, Any] = {}
        for p, value in zip(self.parameters, args, strict=False):
            bound[p.name] = value
        for key, value in kwargs.items():
            if key not in self.by_name or key in self._positional_only:
                raise TypeError(f"{self.task_name} got an unexpected argument '{key}'")
            if key in bound:
                raise TypeError(f"{self.task_name} got multiple values for argument '{key}'")
            bound[key] = value
        if len(bound) < len(self.parameters):
            for p in self.parameters:
                if p.name not in bound:
                    if p.required:
                        raise TypeError(f"{self.task_name} is missing the argument '{p.name}'")
                    bound[p.name] = p.default
        return bound

    def encode_inputs(self, bound: Mapping[str, Any]) -> EncodedInputs:
        return EncodedInputs.of({p.name: p.codec.encode(bound[p.name]) for p in self.parameters})

    def decode_inputs(self, inputs: EncodedInputs) -> dict[str, Any]:
        return {name: self.by_name[name].codec.decode(value) for name, value in inputs.values.items()}

    def as_outputs(self, value: Any) -> tuple[Any, ...]:
        return as_outputs(self.has_output, self.output_arity, value)


def as_outputs(has_output: bool, arity: int, value: Any) -> tuple[Any, ...]:
    """A task's return value as the tuple `Run.outputs()` shows."""
    if not has_output:
        return ()
    if arity > 1:
        return tuple(value)
    return (value,)
