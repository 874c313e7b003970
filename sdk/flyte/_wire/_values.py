"""One value in wire form: `EncodedValue` (what the codec makes) and `WireValue` (its JSON model)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import StringConstraints

from ._base import Digest, Payload, WireModel

ValueKind = Literal["json", "pickle"]


@dataclass(frozen=True, slots=True)
class EncodedValue:
    """One value in wire form: inline bytes or a blob reference, with the digest of the encoded bytes."""

    kind: ValueKind
    digest: str
    payload: bytes | None = None
    ref: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload) if self.payload is not None else 0


class WireValue(WireModel):
    """One encoded value: JSON text or base64 pickle bytes inline, or a blob reference."""

    kind: Literal["json", "pickle"]
    digest: Digest
    json_text: Payload | None = None
    pickle_b64: Payload | None = None
    ref: Annotated[str, StringConstraints(max_length=2048)] | None = None

    @classmethod
    def from_encoded(cls, value: EncodedValue) -> WireValue:
        return cls.model_validate(wire_value_fields(value))

    def to_encoded(self) -> EncodedValue:
        if self.ref is not None:
            return EncodedValue(self.kind, self.digest, ref=self.ref)
        if self.json_text is not None:
            return EncodedValue("json", self.digest, payload=self.json_text.encode())
        return EncodedValue("pickle", self.digest, payload=base64.b64decode(self.pickle_b64 or ""))


def wire_value_fields(value: EncodedValue) -> dict[str, str]:
    """The JSON fields of a `WireValue`, without building the model (hot path: one per finished action)."""
    if value.payload is None:
        return {"kind": value.kind, "digest": value.digest, "ref": value.ref or ""}
    if value.kind == "json":
        return {"kind": "json", "digest": value.digest, "json_text": value.payload.decode()}
    return {"kind": "pickle", "digest": value.digest, "pickle_b64": base64.b64encode(value.payload).decode()}
