"""`flyte.artifacts` (Flyte 2's name): outputs published as named, versioned artifacts. There is no artifact
service here, so the names import and using one raises `NotImplementedError`."""

from __future__ import annotations

from ._unimplemented import missing_class, missing_function

__all__ = ["Artifact", "Metadata", "new"]

_ARTIFACTS = "artifacts (no artifact service; return the File, Dir or value itself)"

Artifact = missing_class("flyte.artifacts.Artifact", _ARTIFACTS)
Metadata = missing_class("flyte.artifacts.Metadata", _ARTIFACTS)
new = missing_function("flyte.artifacts.new", _ARTIFACTS)
