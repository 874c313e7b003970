"""Whether a task's outputs are cached, and what goes into the cache key besides its inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

__all__ = ["Cache", "CacheBehavior", "CachePolicy", "VersionParameters", "normalize_cache"]

CacheBehavior = Literal["auto", "override", "disable"]
""""auto": version from the task's code; "override": the user pins the version; "disable": no caching."""

_BEHAVIORS: tuple[str, ...] = get_args(CacheBehavior)
# Spellings Flyte 2 accepts for the behaviours, so `cache="enable"` or `cache="off"` work here too.
_ALIASES: dict[str, CacheBehavior] = {
    **{word: "auto" for word in ("enable", "enabled", "on", "true", "yes")},
    **{word: "disable" for word in ("off", "false", "no", "none")},
}


@dataclass(frozen=True)
class VersionParameters:
    """What a `CachePolicy` computes a cache version from: the task's function and its image."""

    func: Callable[..., Any] | None
    image: Any = None


@runtime_checkable
class CachePolicy(Protocol):
    """A custom cache version (Flyte 2's): `Cache("auto", policies=[GitHashPolicy()])`."""

    def get_version(self, salt: str, params: VersionParameters) -> str: ...


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

    serialize: bool = False
    """Flyte 2's hint that concurrent identical calls should wait for one another; accepted, no effect yet."""

    policies: tuple[CachePolicy, ...] | list[CachePolicy] | CachePolicy | None = None
    """Custom versions for "auto": the version is a digest of every policy's `get_version`; None: the code's."""

    def __post_init__(self) -> None:
        if isinstance(self.behavior, str) and self.behavior.lower() in _ALIASES:
            object.__setattr__(self, "behavior", _ALIASES[self.behavior.lower()])
        if self.behavior not in _BEHAVIORS:
            raise ValueError(f"Cache: behavior={self.behavior!r} must be one of {', '.join(_BEHAVIORS)}")
        self._normalise_version()
        object.__setattr__(self, "ignored_inputs", _input_names(self.ignored_inputs))
        if not isinstance(self.salt, str):
            raise ValueError(f"Cache: salt={self.salt!r} must be a str")
        if not isinstance(self.serialize, bool):
            raise ValueError(f"Cache: serialize={self.serialize!r} must be True or False")
        policies: object = self.policies
        if policies is not None:
            listed = (policies,) if isinstance(policies, CachePolicy) else policies
            if not isinstance(listed, tuple | list) or not all(isinstance(p, CachePolicy) for p in listed):
                raise ValueError(f"Cache: policies={policies!r} must be CachePolicy objects (with get_version)")
            object.__setattr__(self, "policies", tuple(listed))

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

    def version_for(self, func: Callable[..., Any], image: Any, default: Callable[[], str]) -> str:
        """The cache version of a task: the pinned one, else the policies' digest, else `default()` (the code's)."""
        if self.version_override:
            return self.version_override
        if not self.policies:
            return default()
        assert isinstance(self.policies, tuple)  # normalised in __post_init__
        params = VersionParameters(func, image)
        material = "".join(policy.get_version(self.salt, params) for policy in self.policies)
        return hashlib.sha256(material.encode()).hexdigest()[:16]

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
    if isinstance(value, str) and value.lower() in _ALIASES:
        value = _ALIASES[value.lower()]
    if value is True or value == "auto":
        return Cache("auto")
    if value is False or value is None or value == "disable":
        return Cache("disable")
    if value == "override":
        raise ValueError("cache='override' needs a version: use Cache('override', version_override='...')")
    raise ValueError(f"cache={value!r} must be a Cache, 'auto', 'disable', True, False or None")
