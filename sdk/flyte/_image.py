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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import ClassVar, Literal, TypeAlias, get_args

__all__ = [
    "AptPackages",
    "CodeBundle",
    "Commands",
    "DockerfileBuild",
    "EnvVars",
    "Image",
    "Layer",
    "PipPackages",
    "PythonWheels",
    "Requirements",
    "SourceFolder",
    "UVProject",
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

_DOCKERFILE_ONLY = "Image: an image built from a Dockerfile takes no other layers; add them to the Dockerfile"

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


@dataclass(frozen=True)
class CodeBundle:
    """Build layer: copy the environment's code bundle into the image (Flyte 2's `with_code_bundle`)."""

    kind: ClassVar[str] = "code_bundle"
    """Tag naming the layer type in `to_dict()` output."""

    copy_style: Literal["loaded_modules", "all"] = "loaded_modules"
    """"loaded_modules": the source files the tasks are defined in; "all": their whole common directory."""

    dst: str = "."
    """Where the code goes, relative to the working directory unless absolute."""

    def __post_init__(self) -> None:
        if self.copy_style not in ("loaded_modules", "all"):
            raise ValueError(f"CodeBundle: copy_style={self.copy_style!r} must be 'loaded_modules' or 'all'")
        object.__setattr__(self, "dst", _path("CodeBundle", "dst", self.dst))

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "copy_style": self.copy_style, "dst": self.dst}


UVInstallMode = Literal["dependencies_only", "install_project"]


@dataclass(frozen=True)
class UVProject:
    """Build layer: install a uv project's dependencies (locked by `uv.lock` when given)."""

    kind: ClassVar[str] = "uv_project"
    """Tag naming the layer type in `to_dict()` output."""

    pyproject: str
    """The project's pyproject.toml (a str or path; stored as a str)."""

    uvlock: str | None = None
    """Its uv.lock, for exactly the locked versions; None resolves from pyproject.toml."""

    project_install_mode: UVInstallMode = "dependencies_only"
    """Install only the dependencies, or the project itself too."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pyproject", _path("UVProject", "pyproject", self.pyproject))
        if self.uvlock is not None:
            object.__setattr__(self, "uvlock", _path("UVProject", "uvlock", self.uvlock))
        if self.project_install_mode not in get_args(UVInstallMode):
            raise ValueError(
                f"UVProject: project_install_mode={self.project_install_mode!r} must be one of "
                f"{list(get_args(UVInstallMode))}"
            )

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {
            "kind": self.kind,
            "pyproject": self.pyproject,
            "uvlock": self.uvlock,
            "project_install_mode": self.project_install_mode,
        }


@dataclass(frozen=True)
class PythonWheels:
    """Build layer: install the wheels found in a local directory (Flyte 2's `PythonWheels`)."""

    kind: ClassVar[str] = "python_wheels"
    """Tag naming the layer type in `to_dict()` output."""

    wheel_dir: str
    """A local directory of `.whl` files (a str or path; stored as a str)."""

    package_name: str | None = None
    """Install this package from the wheels (resolving the rest from the index); None installs every wheel."""

    pre: bool = False
    """Allow pre-release versions."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "wheel_dir", _path("PythonWheels", "wheel_dir", self.wheel_dir))
        if self.package_name is not None:
            object.__setattr__(self, "package_name", _texts("PythonWheels", "package_name", [self.package_name])[0])
        if not isinstance(self.pre, bool):
            raise ValueError(f"PythonWheels: pre={self.pre!r} must be True or False")

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "wheel_dir": self.wheel_dir, "package_name": self.package_name, "pre": self.pre}


@dataclass(frozen=True)
class DockerfileBuild:
    """The whole image from a user's Dockerfile (Flyte 2's `from_dockerfile`); nothing can be layered on top."""

    kind: ClassVar[str] = "dockerfile"
    """Tag naming the layer type in `to_dict()` output."""

    path: str
    """The Dockerfile; its directory is the build context."""

    digest: str
    """sha256 of the Dockerfile's content when the spec was made: an edited file is another image."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path("DockerfileBuild", "path", self.path))
        if not isinstance(self.digest, str) or not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise ValueError(f"DockerfileBuild: digest={self.digest!r} must be a sha256 hex digest")

    def to_dict(self) -> dict[str, object]:
        """The layer as plain data, for the wire and for `Image.identifier`."""
        return {"kind": self.kind, "path": self.path, "digest": self.digest}


Layer: TypeAlias = (
    PipPackages
    | AptPackages
    | Requirements
    | EnvVars
    | SourceFolder
    | Commands
    | CodeBundle
    | UVProject
    | PythonWheels
    | DockerfileBuild
)
_LAYER_TYPES = (
    PipPackages,
    AptPackages,
    Requirements,
    EnvVars,
    SourceFolder,
    Commands,
    CodeBundle,
    UVProject,
    PythonWheels,
    DockerfileBuild,
)


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

    install_flyte: bool = True
    """Whether a Debian-based build installs this SDK (Flyte 2's `install_flyte`); False for a bare image."""

    ref_name: str | None = None
    """An image known by name to the deployment (Flyte 2's `from_ref_name`), resolved where it runs."""

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
        if not isinstance(self.install_flyte, bool):
            raise ValueError(f"Image: install_flyte={self.install_flyte!r} must be True or False")
        if self.ref_name is not None and (
            not isinstance(self.ref_name, str)
            or not self.ref_name.strip()
            or (self.uri, self.base_uri, self.layers) != (None, None, ())
        ):
            raise ValueError(f"Image: ref_name={self.ref_name!r} must be a non-empty name, alone (no uri or layers)")
        if any(isinstance(layer, DockerfileBuild) for layer in self.layers) and len(self.layers) != 1:
            raise ValueError(
                "Image: an image built from a Dockerfile takes no other layers; add them to the Dockerfile"
            )

    @classmethod
    def from_debian_base(
        cls,
        python_version: tuple[int, int] | None = None,
        name: str | None = None,
        *,
        flyte_version: str | None = None,
        install_flyte: bool = True,
        registry: str | None = None,
        registry_secret: str | None = None,
        platform: tuple[str, ...] | None = None,
    ) -> Image:
        """A Debian-based image with `python_version` (default: this interpreter's) to add layers to.

        `install_flyte=False` leaves this SDK out (a bare Python image). `registry` prefixes `name`. Flyte 2's
        `flyte_version`, `registry_secret` and `platform` are accepted and have no effect: the image gets this
        SDK's own version, and builds target the builder's platform.
        """
        if python_version is None:
            python_version = (sys.version_info.major, sys.version_info.minor)
        return cls(python_version=python_version, name=_qualified(registry, name), install_flyte=install_flyte)

    @classmethod
    def from_uv_script(
        cls,
        script: str | PurePath,
        *,
        name: str | None = None,
        registry: str | None = None,
        python_version: tuple[int, int] | None = None,
        index_url: str | None = None,
        extra_index_urls: tuple[str, ...] | list[str] = (),
        pre: bool = False,
    ) -> Image:
        """A Debian-based image with the dependencies a script declares in its PEP 723 `# /// script` block.

        The Python version is `python_version`, else the lowest the block's `requires-python` admits, else this
        interpreter's.
        """
        metadata = _script_metadata(Path(script))
        dependencies = metadata.get("dependencies") or []
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise ValueError(f"Image.from_uv_script: {script}: dependencies must be a list of requirement strings")
        if python_version is None:
            python_version = _lowest_python(metadata.get("requires-python"))
        image = cls.from_debian_base(python_version, name, registry=registry)
        if dependencies:
            image = image.with_pip_packages(
                *dependencies, index_url=index_url, extra_index_urls=extra_index_urls, pre=pre
            )
        return image

    @classmethod
    def from_dockerfile(
        cls,
        file: str | PurePath,
        registry: str | None = None,
        name: str | None = None,
        platform: tuple[str, ...] | None = None,
    ) -> Image:
        """The image a Dockerfile builds (its directory is the build context); its content is part of the id."""
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"Image.from_dockerfile: {str(file)!r} is not a file")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        layer = DockerfileBuild(str(path.resolve()), digest)
        return cls(name=_qualified(registry, name), install_flyte=False, layers=(layer,))

    @classmethod
    def from_ref_name(cls, name: str) -> Image:
        """An image the deployment knows by `name` (resolved where it runs; nothing is built)."""
        return cls(ref_name=name)

    @classmethod
    def from_base(cls, image_uri: str) -> Image:
        """An existing image, used as-is unless layers are added on top of it."""
        return cls(uri=image_uri)

    @classmethod
    def auto(cls) -> Image:
        """The default image: Debian with this interpreter's Python version."""
        return cls.from_debian_base()

    def _with_layer(self, layer: Layer) -> Image:
        if self.ref_name is not None:
            raise ValueError(f"Image: {self.ref_name!r} is a reference by name; layers cannot be added to it")
        if any(isinstance(existing, DockerfileBuild) for existing in self.layers):
            raise ValueError(
                "Image: an image built from a Dockerfile takes no other layers; add them to the Dockerfile"
            )
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

    def with_commands(self, *cmds: str | list[str] | tuple[str, ...]) -> Image:
        """This image plus shell commands run at build time, in order: `with_commands("a", "b")` or, as Flyte 2
        writes it, `with_commands(["a", "b"])`."""
        flat: list[object] = []
        for cmd in cmds:
            flat.extend(cmd) if isinstance(cmd, list | tuple) else flat.append(cmd)
        return self._with_layer(Commands(tuple(flat)))  # type: ignore[arg-type]

    def with_code_bundle(
        self, copy_style: Literal["loaded_modules", "all"] = "loaded_modules", dst: str = "."
    ) -> Image:
        """This image with the environment's code copied in (so it runs without a code bundle download)."""
        return self._with_layer(CodeBundle(copy_style, dst))

    def with_uv_project(
        self,
        pyproject_file: str | PurePath,
        uvlock: str | PurePath | None = None,
        project_install_mode: UVInstallMode = "dependencies_only",
    ) -> Image:
        """This image plus a uv project's dependencies (locked by `uvlock`, if given)."""
        lock = None if uvlock is None else _path("UVProject", "uvlock", uvlock)
        return self._with_layer(UVProject(_path("UVProject", "pyproject", pyproject_file), lock, project_install_mode))

    def with_python_wheels(
        self, wheel_dir: str | PurePath, package_name: str | None = None, pre: bool = False
    ) -> Image:
        """This image plus the wheels in a local directory (a `PythonWheels` layer)."""
        return self._with_layer(PythonWheels(_path("PythonWheels", "wheel_dir", wheel_dir), package_name, pre))

    def clone(
        self,
        registry: str | None = None,
        name: str | None = None,
        base_image: str | None = None,
        python_version: tuple[int, int] | None = None,
        addl_layer: Layer | None = None,
        extendable: bool = True,
    ) -> Image:
        """A copy under another name (and registry), optionally on another base or Python, plus one layer.

        Flyte 2's `extendable` is accepted and has no effect: every spec here can take more layers.
        """
        changes: dict[str, object] = {}
        if name is not None or registry is not None:
            changes["name"] = _qualified(registry, name if name is not None else self.name)
        if base_image is not None:
            changes["base_uri"] = _reference("base_image", base_image)
            changes["uri"] = None
            changes["python_version"] = None
        if python_version is not None:
            changes["python_version"] = python_version
        image = replace(self, **changes) if changes else self  # type: ignore[arg-type]
        return image._with_layer(addl_layer) if addl_layer is not None else image

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
        spec: dict[str, object] = {
            "uri": self.uri,
            "base_uri": self.base_uri,
            "python_version": None if version is None else list(version),
            "name": self.name,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        # Only non-default values of the later fields appear, so specs made before them keep their identifiers.
        if not self.install_flyte:
            spec["install_flyte"] = False
        if self.ref_name is not None:
            spec["ref_name"] = self.ref_name
        return spec


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


def _qualified(registry: str | None, name: str | None) -> str | None:
    """`registry/name`, as Flyte 2 composes them; the name alone when there is no registry."""
    if registry is None:
        return name
    if name is None:
        raise ValueError(f"Image: registry={registry!r} needs a name for the image")
    return f"{registry.rstrip('/')}/{name}"


# PEP 723's reference expression for a `script` block.
_SCRIPT_BLOCK = re.compile(r"(?m)^# /// script$\s(?P<body>(?:^#(?:| .*)$\s)+)^# ///$")


def _script_metadata(script: Path) -> dict[str, object]:
    """The PEP 723 `script` metadata block of a Python file (empty when it has none)."""
    try:
        text = script.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"Image.from_uv_script: cannot read {script}: {error.strerror}") from None
    match = _SCRIPT_BLOCK.search(text)
    if match is None:
        return {}
    body = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in match["body"].splitlines())
    try:
        return tomllib.loads(body)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"Image.from_uv_script: {script}: the script block is not valid TOML: {error}") from None


def _lowest_python(requires: object) -> tuple[int, int]:
    """The lowest 3.x (>= the minimum we support) a `requires-python` such as ">=3.11" admits."""
    if requires is None:
        return (sys.version_info.major, sys.version_info.minor)
    found = re.search(r">=?\s*3\.(\d+)", str(requires))
    if found is None:
        raise ValueError(f"Image.from_uv_script: requires-python={requires!r}: give python_version= explicitly")
    return (3, max(int(found[1]), _MIN_PYTHON[1]))
