"""`flyte.types` (Flyte 2's name). Values cross action boundaries through our own codecs (JSON for what the
annotation describes, pickle for the rest), so Flyte 2's type engine and custom transformers are not pluggable
here yet; `Renderable` (anything with `to_html`) is what `flyte.report` accepts as content.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._unimplemented import missing_class, missing_function

__all__ = [
    "FlytePickle",
    "Renderable",
    "TypeEngine",
    "TypeTransformer",
    "TypeTransformerFailedError",
    "guess_interface",
    "literal_string_repr",
]

_ENGINE = "custom type transformers (values use JSON or pickle codecs chosen from the annotation)"


@runtime_checkable
class Renderable(Protocol):
    """A value that renders itself as HTML for a report."""

    def to_html(self, python_value: object) -> str: ...


class TypeTransformerFailedError(TypeError):
    """A value could not be converted to or from its wire form."""


TypeEngine = missing_class("flyte.types.TypeEngine", _ENGINE)
TypeTransformer = missing_class("flyte.types.TypeTransformer", _ENGINE)
FlytePickle = missing_class("flyte.types.FlytePickle", "an explicit pickle marker (unannotated values are pickled)")
guess_interface = missing_function("flyte.types.guess_interface", _ENGINE)
literal_string_repr = missing_function("flyte.types.literal_string_repr", "Flyte literals (values are JSON or pickle)")
