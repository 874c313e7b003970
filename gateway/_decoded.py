"""Action records decoded once: by (key, revision), what this gateway wrote or already read.

A record's bytes at one revision never change, and the gateway reads each action it wrote again soon after: its
watch event, the next compare-and-swap, a parent's list of children. Decoding (pydantic validation of the JSON) was
a tenth of the gateway's time in a fan-out; a record written here is remembered as the model it was encoded from,
and one read is decoded once. Models are frozen, so sharing one is safe. Bounded: the oldest entries go first.
"""

from __future__ import annotations

from flyte._wire import ActionSummary

KEPT = 8192
"""Entries kept: a fan-out reads a record within a few hundred writes of writing it."""


class DecodedActions:
    def __init__(self, kept: int = KEPT):
        self._kept = kept
        self._items: dict[tuple[str, int], ActionSummary] = {}
        self._written: dict[tuple[str, bytes], ActionSummary] = {}
        """Records being written, by their bytes: the watch may see one before its writer learns its revision."""

    def written(self, key: str, value: bytes, action: ActionSummary) -> bytes:
        """`value`, the encoding of `action`, is about to be written at `key`; returns `value`."""
        written = self._written
        written[(key, value)] = action
        if len(written) > self._kept:
            del written[next(iter(written))]
        return value

    def committed(self, key: str, value: bytes, action: ActionSummary, revision: int) -> ActionSummary:
        """`action`, written at `key` as `value` (`written`), as stored at `revision` once its commit returned: the copy
        the watch made if it saw the write first, so a record is copied with its revision once, not by both."""
        self._written.pop((key, value), None)
        seen = self._items.get((key, revision))
        if seen is not None:
            return seen
        return self.remember(key, action.model_copy(update={"revision": revision}))

    def remember(self, key: str, action: ActionSummary) -> ActionSummary:
        """`action` (with its `revision` set) as stored at `key`; returns it."""
        items = self._items
        items[(key, action.revision)] = action
        if len(items) > self._kept:
            del items[next(iter(items))]
        return action

    def decode(self, key: str, value: bytes, revision: int) -> ActionSummary:
        """The action `value` holds at `revision` (raises pydantic's ValidationError for an unreadable one)."""
        hit = self._items.get((key, revision))
        if hit is not None:
            return hit
        mine = self._written.pop((key, value), None)
        if mine is not None:
            return self.remember(key, mine.model_copy(update={"revision": revision}))
        action = ActionSummary.model_validate_json(value).model_copy(update={"revision": revision})
        return self.remember(key, action)
