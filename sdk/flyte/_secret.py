"""References to secrets a task needs at run time, and how each is handed to the task's process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath

from ._wire import derived_env_var

__all__ = ["Secret", "normalize_secrets"]

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Secret:
    """A named secret; delivered as an environment variable (`env_var`) and, if `mount` is set, a file."""

    key: str
    """The secret's name in the secret store: letters, digits, '-', '_' and '.'."""

    group: str | None = None
    """An optional namespace the key lives in (same characters as `key`)."""

    mount: str | PurePath | None = None
    """An absolute directory to also mount the secret under as a file (stored as a str), or None."""

    as_env_var: str | None = None
    """The environment variable to expose it as; None derives one from the key (see `env_var`)."""

    def __post_init__(self) -> None:
        for name in ("key", "group"):
            value = getattr(self, name)
            if value is None and name == "group":
                continue
            if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
                raise ValueError(
                    f"Secret: {name}={value!r} must be a non-empty name of letters, digits, '-', '_' or '.'"
                )
        if self.mount is not None:
            if not isinstance(self.mount, str | PurePath) or not str(self.mount).startswith("/"):
                raise ValueError(f"Secret: mount={self.mount!r} must be an absolute path")
            # Mount points are paths inside a Linux container, whatever OS the SDK runs on.
            object.__setattr__(self, "mount", PurePosixPath(str(self.mount)).as_posix())
        if self.as_env_var is not None and (
            not isinstance(self.as_env_var, str) or not _ENV_VAR_RE.fullmatch(self.as_env_var)
        ):
            raise ValueError(
                f"Secret: as_env_var={self.as_env_var!r} is not an environment variable name "
                "(letters, digits and '_', not starting with a digit)"
            )

    @property
    def env_var(self) -> str:
        """`as_env_var`, or the key upper-cased with every other character turned into '_'."""
        return self.as_env_var if self.as_env_var is not None else derived_env_var(self.key)

    def to_dict(self) -> dict[str, str | None]:
        """The normalised reference, for the wire and for display."""
        mount = None if self.mount is None else str(self.mount)
        return {"key": self.key, "group": self.group, "mount": mount, "env_var": self.env_var}


def normalize_secrets(
    value: str | Secret | list[str | Secret] | tuple[str | Secret, ...] | None,
) -> tuple[Secret, ...]:
    """The `secrets=` argument of a task as a tuple of `Secret`s, repeats dropped, order kept."""
    if value is None:
        return ()
    items: object = (value,) if isinstance(value, str | Secret) else value
    if not isinstance(items, tuple | list):
        raise ValueError(f"secrets={value!r} must be a str, a Secret, or a list of them")
    secrets: list[Secret] = []
    by_env_var: dict[str, Secret] = {}
    for item in items:
        if isinstance(item, str):
            secret = Secret(key=item)
        elif isinstance(item, Secret):
            secret = item
        else:
            raise ValueError(f"secrets={value!r}: {item!r} is not a str or a Secret")
        if secret in secrets:
            continue
        clash = by_env_var.get(secret.env_var)
        if clash is not None:
            # Two secrets in one variable means one silently wins at run time.
            raise ValueError(f"secrets={value!r}: {clash!r} and {secret!r} both use ${secret.env_var}")
        by_env_var[secret.env_var] = secret
        secrets.append(secret)
    return tuple(secrets)
