"""Whether a task's outputs are cached, and what goes into the cache key besides its inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

__all__ = ["Cache", "CacheBehavior", "CachePolicy", "normalize_cache"]

CacheBehavior = Literal["auto", "override", "disable"]
""""auto": version from the task's code; "override": the user pins the version; "disable": no caching."""

_BEHAVIORS: tuple[str, ...] = get_args(CacheBehavior)


@runtime_checkable
class CachePolicy(Protocol):
    """Flyte 2's hook for a custom cache version; `Cache(version_override=...)` is how a version is pinned here."""

    def get_version(self, salt: str, params: Any) -> str: ...


@dataclass(frozen=True)
class Cache:
    """A task's cache policy: a hit needs the same task, cache version, salt and (non-ignored) inputs."""

    behavior: CacheBehavior = "auto"
    """"auto", "override" (requires `version_override`) or "disable"."""

    version_override: str | None = None
    """A cache version chosen by the user instead of one derived from the code; blank becomes None."""

    ignored_inputs: tuple[str, ...] | list[str] | str = ()
    """Names of inputs left out of the cache key (a str or a sequence of str; stored as a tuple)."""

    salt: str = ""
    """Extra text mixed into the cache key, to invalidate entries without changing the code."""

    def __post_init__(self) -> None:
        if self.behavior not in _BEHAVIORS:
            raise ValueError(f"Cache: behavior={self.behavior!r} must be one of {', '.join(_BEHAVIORS)}")
        self._normalise_version()
        object.__setattr__(self, "ignored_inputs", _input_names(self.ignored_inputs))
        if not isinstance(self.salt, str):
            raise ValueError(f"Cache: salt={self.salt!r} must be a str")

    def _normalise_version(self) -> None:
        version = self.version_override
        if version is not None and not isinstance(version, str):
            raise ValueError(f"Cache: version_override={version!r} must be a str or None")
        version = version.strip() if version is not None else ""
        if self.behavior == "override" and not version:
            # Without a pinned version "override" would silently behave like "auto".
            raise ValueError(
                f"Cache: version_override={self.version_override!r} must be a non-empty version "
                "when behavior='override'"
            )
        object.__setattr__(self, "version_override", version or None)

    @property
    def is_enabled(self) -> bool:
        """True unless caching is disabled."""
        return self.behavior != "disable"

    def to_dict(self) -> dict[str, object]:
        """The normalised policy, for the wire and for display."""
        return {
            "behavior": self.behavior,
            "version_override": self.version_override,
            "ignored_inputs": list(self.ignored_inputs),
            "salt": self.salt,
        }


def _input_names(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, tuple | list):
        raise ValueError(f"Cache: ignored_inputs={value!r} must be a str or a sequence of str")
    names: list[str] = []
    for item in items:
        # Inputs are Python parameter names, so anything else can never match and is a typo.
        if not isinstance(item, str) or not item.isidentifier():
            raise ValueError(f"Cache: ignored_inputs={value!r}: {item!r} is not an input name")
        if item not in names:
            names.append(item)
    return tuple(names)


def normalize_cache(value: Cache | CacheBehavior | bool | None) -> Cache:
    """The `cache=` argument of a task as a `Cache`: True is "auto"; False and None disable caching."""
    if isinstance(value, Cache):
        return value
    if value is True or value == "auto":
        return Cache("auto")
    if value is False or value is None or value == "disable":
        return Cache("disable")
    if value == "override":
        raise ValueError("cache='override' needs a version: use Cache('override', version_override='...')")
    raise ValueError(f"cache={value!r} must be a Cache, 'auto', 'disable', True, False or None")
