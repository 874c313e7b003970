"""Container image specs for tasks: either a ready-made image reference, or a base plus build layers.

Specs are immutable; every `with_*` builder returns a new `Image`. The process backend makes a virtualenv of the
pip packages a spec adds (docs/settings.md); the Kubernetes backend runs `uri` when it is set and otherwise has the
spec built, keyed by `identifier`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import ClassVar, TypeAlias

__all__ = [
    "AptPackages",
    "Commands",
    "EnvVars",
    "Image",
    "Layer",
    "PipPackages",
    "Requirements",
    "SourceFolder",
]

# Image reference grammar as the Docker registry defines it: [domain[:port]/]path[:tag][@digest].
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?"
_REPOSITORY = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(rf"(?:{_DOMAIN}/)?{_REPOSITORY}(?::{_TAG})?(?:@{_DIGEST})?")
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_REPOSITORY}")
_APT_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(?:=\S+)?")
_ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Older interpreters are past end of life and Flyte 2 does not support them.
_MIN_PYTHON = (3, 10)


def _texts(owner: str, field: str, value: object) -> tuple[str, ...]:
    """Non-empty, single-line strings, stripped; a list becomes a tuple so the spec stays hashable."""
    if not isinstance(value, tuple | list) or not value:
        raise ValueError(f"{owner}: {field}={value!r} must be a non-empty list of strings")
    texts: list[str] = []
    for item in value:
        # A newline would smuggle a second instruction into the generated build file.
        if not isinstance(item, str) or not item.strip() or "\n" in item or "\r" in item:
            raise ValueError(f"{owner}: {field}={value!r}: {item!r} must be a non-empty single-line string")
        texts.append(item.strip())
    return tuple(texts)


def _path(owner: str, field: str, value: object) -> str:
    if not isinstance(value, str | PurePath) or not str(value).strip():
        raise ValueError(f"{owner}: {field}={value!r} must be a non-empty path")
    return value.as_posix() if isinstance(value, PurePath) else value.strip()


@dataclass(frozen=True)
class PipPackages:
    """Build layer: `pip install` these requirement specifiers."""

    kind: ClassVar[str] = "pip_packages"
    """Tag naming the layer type in `to_dict()` output."""

    packages: tuple[str, ...]
    """Requirement specifiers such as "numpy" or "pandas>=2"."""

    index_url: str | None = None
    """A package index to use instead of PyPI, or None."""

    extra_index_urls: tuple[str, ...] = ()
    """More package indexes searched after the main one."""

    pre: bool = False
    """Allow pre-release versions."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", _texts("PipPackages", "packages", self.packages))
        if self.index_url is not None:
            if not isinstance(self.index_url, str) or not self.index_url.strip() or "\n" in self.index_url:
                raise ValueError(f"PipPackages: index_url={self.index_url!r} must be a non-empty URL or None")
            object.__setattr__(self, "index_url", self.index_url.strip())
        if self.extra_index_urls:
            urls = _texts("PipPackages", "extra_index_urls", self.extra_index_urls)
            object.__setattr__(self, "extra_index_urls", urls)
        else:
            object.__setattr__(self, "extra_index_urls", ())
        if not isinstance(self.pre, bool):
            raise ValueError(f"PipPackages: pre={self.pre!r} must be True or False")

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {
            "kind": self.kind,
            "packages": list(self.packages),
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "pre": self.pre,
        }


@dataclass(frozen=True)
class AptPackages:
    """Build layer: `apt-get install` these Debian packages."""

    kind: ClassVar[str] = "apt_packages"
    """Tag naming the layer type in `to_dict()` output."""

    packages: tuple[str, ...]
    """Debian package names, optionally pinned as "name=version"."""

    def __post_init__(self) -> None:
        packages = _texts("AptPackages", "packages", self.packages)
        for package in packages:
            if not _APT_RE.fullmatch(package):
                raise ValueError(f"AptPackages: packages={self.packages!r}: {package!r} is not a package name")
        object.__setattr__(self, "packages", packages)

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "packages": list(self.packages)}


@dataclass(frozen=True)
class Requirements:
    """Build layer: `pip install -r` a requirements file from the local project."""

    kind: ClassVar[str] = "requirements"
    """Tag naming the layer type in `to_dict()` output."""

    path: str
    """The requirements file, relative to where the image is built from (a str or path; stored as a str)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path("Requirements", "path", self.path))

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "path": self.path}


@dataclass(frozen=True)
class EnvVars:
    """Build layer: set environment variables in the image."""

    kind: ClassVar[str] = "env_vars"
    """Tag naming the layer type in `to_dict()` output."""

    variables: tuple[tuple[str, str], ...]
    """(name, value) pairs in the order given (a mapping is accepted and converted)."""

    def __post_init__(self) -> None:
        raw: object = self.variables
        pairs = list(raw.items()) if isinstance(raw, Mapping) else raw
        if not isinstance(pairs, tuple | list) or not pairs:
            raise ValueError(f"EnvVars: variables={raw!r} must be a non-empty mapping of str to str")
        normalised: list[tuple[str, str]] = []
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"EnvVars: variables={raw!r}: {pair!r} is not a (name, value) pair")
            name, value = pair
            if not isinstance(name, str) or not _ENV_VAR_RE.fullmatch(name):
                raise ValueError(f"EnvVars: variables={raw!r}: {name!r} is not an environment variable name")
            if not isinstance(value, str):
                raise ValueError(f"EnvVars: variables={raw!r}: the value of {name} must be a str")
            normalised.append((name, value))
        object.__setattr__(self, "variables", tuple(normalised))

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "variables": [list(pair) for pair in self.variables]}


@dataclass(frozen=True)
class SourceFolder:
    """Build layer: copy a local folder into the image."""

    kind: ClassVar[str] = "source_folder"
    """Tag naming the layer type in `to_dict()` output."""

    src: str
    """The local folder to copy (a str or path; stored as a str)."""

    dst: str = "."
    """Where to put it in the image, relative to the working directory unless absolute."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", _path("SourceFolder", "src", self.src))
        object.__setattr__(self, "dst", _path("SourceFolder", "dst", self.dst))

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "src": self.src, "dst": self.dst}


@dataclass(frozen=True)
class Commands:
    """Build layer: run shell commands, in order."""

    kind: ClassVar[str] = "commands"
    """Tag naming the layer type in `to_dict()` output."""

    commands: tuple[str, ...]
    """Single-line shell commands."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "commands", _texts("Commands", "commands", self.commands))

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "commands": list(self.commands)}


Layer: TypeAlias = PipPackages | AptPackages | Requirements | EnvVars | SourceFolder | Commands
_LAYER_TYPES = (PipPackages, AptPackages, Requirements, EnvVars, SourceFolder, Commands)


def _reference(field: str, value: object) -> str:
    if not isinstance(value, str) or not _REFERENCE_RE.fullmatch(value):
        raise ValueError(
            f"Image: {field}={value!r} is not an image reference like 'python:3.11-slim' "
            "or 'registry.example.com/team/app:1.0'"
        )
    return value


@dataclass(frozen=True)
class Image:
    """The image a task runs in. Build one with `from_debian_base`, `from_base` or `auto`, then `with_*`."""

    uri: str | None = None
    """A ready-to-run image reference; only set when there is nothing to build (no layers)."""

    base_uri: str | None = None
    """The image the layers build on; None with no `uri` means a Debian base with `python_version`."""

    python_version: tuple[int, int] | None = None
    """(major, minor) of the Python a Debian-based build installs; None for a user-supplied image."""

    name: str | None = None
    """The repository a built image is pushed as; None lets the builder choose."""

    layers: tuple[Layer, ...] = ()
    """Build steps, applied in order on top of the base."""

    def __post_init__(self) -> None:
        if self.uri is not None:
            _reference("uri", self.uri)
        if self.base_uri is not None:
            _reference("base_uri", self.base_uri)
        if self.uri is not None and self.base_uri is not None:
            raise ValueError(
                f"Image: uri={self.uri!r} with base_uri={self.base_uri!r}: a ready image has no separate base"
            )
        if self.python_version is not None:
            object.__setattr__(self, "python_version", _python_version(self.python_version))
        if self.name is not None and (not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name)):
            raise ValueError(f"Image: name={self.name!r} is not a repository name like 'team/app'")
        layers: object = self.layers
        if not isinstance(layers, tuple | list) or not all(isinstance(x, _LAYER_TYPES) for x in layers):
            raise ValueError(f"Image: layers={layers!r} must be a sequence of build layers")
        object.__setattr__(self, "layers", tuple(layers))
        if self.uri is not None and self.layers:
            # Running `uri` as-is would silently drop the layers; builders move it to base_uri instead.
            raise ValueError(f"Image: uri={self.uri!r} cannot have layers; use base_uri for the image to build on")

    @classmethod
    def from_debian_base(cls, python_version: tuple[int, int] | None = None, name: str | None = None) -> Image:
        """A Debian-based image with `python_version` (default: this interpreter's) to add layers to."""
        if python_version is None:
            python_version = (sys.version_info.major, sys.version_info.minor)
        return cls(python_version=python_version, name=name)

    @classmethod
    def from_base(cls, image_uri: str) -> Image:
        """An existing image, used as-is unless layers are added on top of it."""
        return cls(uri=image_uri)

    @classmethod
    def auto(cls) -> Image:
        """The default image: Debian with this interpreter's Python version."""
        return cls.from_debian_base()

    def _with_layer(self, layer: Layer) -> Image:
        # Adding a layer means the image must be built, so a ready `uri` becomes the base to build on.
        base = self.uri if self.uri is not None else self.base_uri
        return replace(self, uri=None, base_uri=base, layers=(*self.layers, layer))

    def with_pip_packages(
        self,
        *packages: str,
        index_url: str | None = None,
        extra_index_urls: tuple[str, ...] | list[str] = (),
        pre: bool = False,
    ) -> Image:
        """This image plus `pip install` of `packages`."""
        return self._with_layer(PipPackages(packages, index_url, tuple(extra_index_urls), pre))

    def with_apt_packages(self, *packages: str) -> Image:
        """This image plus `apt-get install` of `packages`."""
        return self._with_layer(AptPackages(packages))

    def with_requirements(self, path: str | PurePath) -> Image:
        """This image plus `pip install -r path`."""
        return self._with_layer(Requirements(_path("Requirements", "path", path)))

    def with_env_vars(self, env_vars: Mapping[str, str]) -> Image:
        """This image with the environment variables set."""
        return self._with_layer(EnvVars(tuple(env_vars.items())))

    def with_source_folder(self, path: str | PurePath, dst: str = ".") -> Image:
        """This image with the local folder `path` copied to `dst`."""
        return self._with_layer(SourceFolder(_path("SourceFolder", "src", path), dst))

    def with_commands(self, *cmds: str) -> Image:
        """This image plus shell commands run at build time, in order."""
        return self._with_layer(Commands(cmds))

    @property
    def needs_build(self) -> bool:
        """True unless `uri` names a ready-made image."""
        return self.uri is None

    @property
    def identifier(self) -> str:
        """16 hex characters of sha256 over the canonical JSON of the spec; equal specs give equal ids.

        Files the spec names (requirements, source folders) enter by path, not content.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        """The spec as plain data, for the wire and for display."""
        version = self.python_version
        return {
            "uri": self.uri,
            "base_uri": self.base_uri,
            "python_version": None if version is None else list(version),
            "name": self.name,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def _python_version(value: object) -> tuple[int, int]:
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) for part in value)
    ):
        major, minor = int(value[0]), int(value[1])
        if major == _MIN_PYTHON[0] and minor >= _MIN_PYTHON[1]:
            return (major, minor)
    raise ValueError(f"Image: python_version={value!r} must be (3, minor) with minor >= {_MIN_PYTHON[1]}")
