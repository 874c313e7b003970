"""Where an action may run across the federation: regions, clouds, clusters and cluster labels.

Not part of Flyte 2. An empty list means "anywhere"; a non-empty one is both a restriction and a
preference order (first is most preferred). A task-level placement narrows its environment's via `merge`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Labels", "Placement"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Kubernetes label syntax: optional DNS prefix, then a name of up to 63 characters; values may be empty.
_LABEL_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(rf"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?/)?{_LABEL_PART}")
_LABEL_VALUE_RE = re.compile(rf"(?:{_LABEL_PART})?")


class Labels(Mapping[str, str]):
    """A read-only, hashable str -> str mapping, so a frozen `Placement` can hold labels and stay hashable."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        # Sorted so that equal label sets print, serialise and hash the same whatever the input order.
        self._items: dict[str, str] = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"


_NO_LABELS = Labels()


def _names(value: object, field: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    # A set would lose the preference order (and iterate differently from run to run).
    if not isinstance(items, tuple | list):
        raise ValueError(f"Placement: {field}={value!r} must be a str or a list/tuple of str")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str) or not _NAME_RE.fullmatch(item):
            raise ValueError(
                f"Placement: {field}={value!r}: {item!r} is not a name of letters, digits, '.', '_' or '-'"
            )
        if item not in names:
            names.append(item)
    return tuple(names)


def _labels(value: object) -> Labels:
    if not isinstance(value, Mapping):
        raise ValueError(f"Placement: labels={value!r} must be a mapping of str to str")
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
            raise ValueError(f"Placement: labels={value!r}: {key!r} is not a label key")
        if not isinstance(item, str) or not _LABEL_VALUE_RE.fullmatch(item):
            raise ValueError(f"Placement: labels={value!r}: {item!r} is not a label value for {key!r}")
    return value if isinstance(value, Labels) else Labels(value)


def _narrow(outer: tuple[str, ...], inner: tuple[str, ...], field: str) -> tuple[str, ...]:
    if not outer:
        return inner
    if not inner:
        return outer
    # The inner (task-level) side is the more specific one, so its preference order wins.
    common = tuple(name for name in inner if name in outer)
    if not common:
        raise ValueError(f"Placement.merge: {field}={outer!r} and {field}={inner!r} have nothing in common")
    return common


@dataclass(frozen=True)
class Placement:
    """Constraints and preferences on where an action runs; the default allows any cluster."""

    regions: tuple[str, ...] | list[str] | str = ()
    """Regions allowed, most preferred first; empty: any region."""

    clouds: tuple[str, ...] | list[str] | str = ()
    """Cloud providers allowed, most preferred first; empty: any cloud."""

    clusters: tuple[str, ...] | list[str] | str = ()
    """Clusters allowed, most preferred first; empty: any cluster."""

    labels: Mapping[str, str] = _NO_LABELS
    """Labels a cluster must carry, all of them (stored as a read-only, hashable `Labels`)."""

    avoid: tuple[str, ...] | list[str] | str = ()
    """Clusters never to use, e.g. ones known to be unhealthy or too expensive."""

    spread: bool = False
    """Prefer spreading sibling actions over clusters rather than packing them into the best one."""

    prefer_warm: bool = True
    """Prefer clusters that already have the task's image and a warm reusable environment."""

    def __post_init__(self) -> None:
        for field in ("regions", "clouds", "clusters", "avoid"):
            object.__setattr__(self, field, _names(getattr(self, field), field))
        object.__setattr__(self, "labels", _labels(self.labels))
        for flag in ("spread", "prefer_warm"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"Placement: {flag}={getattr(self, flag)!r} must be True or False")
        both = [name for name in self.clusters if name in self.avoid]
        if both:
            raise ValueError(f"Placement: clusters={self.clusters!r} and avoid={self.avoid!r} both name {both[0]!r}")

    def merge(self, other: Placement) -> Placement:
        """This placement narrowed by `other` (e.g. an environment's by a task's); ValueError if nothing fits.

        Allowed lists intersect (keeping `other`'s order), `avoid` lists unite, `other`'s labels win,
        and `spread` / `prefer_warm` come from `other`.
        """
        avoid = tuple(dict.fromkeys((*self.avoid, *other.avoid)))
        narrowed = _narrow(_as_tuple(self.clusters), _as_tuple(other.clusters), "clusters")
        clusters = tuple(name for name in narrowed if name not in avoid)
        if narrowed and not clusters:
            # Dropping every cluster would turn "only these" into "anywhere".
            raise ValueError(f"Placement.merge: every allowed cluster {narrowed!r} is in avoid={avoid!r}")
        return Placement(
            regions=_narrow(_as_tuple(self.regions), _as_tuple(other.regions), "regions"),
            clouds=_narrow(_as_tuple(self.clouds), _as_tuple(other.clouds), "clouds"),
            clusters=clusters,
            labels={**self.labels, **other.labels},
            avoid=avoid,
            spread=other.spread,
            prefer_warm=other.prefer_warm,
        )

    def to_dict(self) -> dict[str, object]:
        """The normalised placement, for the wire and for display."""
        return {
            "regions": list(_as_tuple(self.regions)),
            "clouds": list(_as_tuple(self.clouds)),
            "clusters": list(_as_tuple(self.clusters)),
            "labels": dict(self.labels),
            "avoid": list(_as_tuple(self.avoid)),
            "spread": self.spread,
            "prefer_warm": self.prefer_warm,
        }


def _as_tuple(value: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    # After __post_init__ the fields are tuples; this only narrows the constructor's wider type.
    return (value,) if isinstance(value, str) else tuple(value)
