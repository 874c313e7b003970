"""From an `Image` spec to a Docker build: the Dockerfile and the build context it needs, written to a directory.

Every layer becomes Dockerfile instructions in order; the local files a layer names (requirements, source folders,
uv projects, wheels, the code bundle) are copied into the context under `layers/<n>/`, with paths relative to the
project's root (the directory the program lives in, or `root_dir`). The same spec and files give the same
context. `flyte build FILE ENV` writes it; `build_context` builds it with `docker` when one is on PATH.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._config import current_config
from ._deploy import code_bundle
from ._environment import TaskEnvironment
from ._image import (
    AptPackages,
    CodeBundle,
    Commands,
    DockerfileBuild,
    EnvVars,
    Image,
    Layer,
    PipPackages,
    PythonWheels,
    Requirements,
    SourceFolder,
    UVProject,
)
from ._paths import flyte_home
from ._syncify import syncify
from .errors import ImageBuildError

__all__ = ["BuildContext", "build", "build_images", "docker_build", "image_tag", "write_build_context"]

_STAGE = "/tmp/flyte-layers"
"""Where files a layer only installs from are copied in the image (kept apart from the working directory)."""
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "node_modules")


@dataclass(frozen=True)
class BuildContext:
    """A written build: the directory to hand to `docker build`, and the tag the image is meant to get."""

    directory: Path
    dockerfile: Path
    tag: str
    identifier: str


def image_tag(image: Image, env_name: str | None) -> str:
    """`<name>:<identifier>`; the name is the spec's, else `flyte-<env>` (or `flyte-image`)."""
    fallback = f"flyte-{env_name}".replace("_", "-") if env_name else "flyte-image"
    return f"{image.name or fallback}:{image.identifier}"


def write_build_context(
    image: Image, directory: Path, source_root: Path, env: TaskEnvironment | None = None
) -> BuildContext:
    """Write the Dockerfile and the files it copies into `directory` (which must be empty or absent).

    `env` is needed only by a `with_code_bundle` layer: its code is that environment's tasks' files.
    """
    env_name = env.name if env is not None else None
    if image.ref_name is not None or image.uri is not None:
        ready = image.ref_name or image.uri
        raise ImageBuildError(f"image {ready!r} is ready-made: there is nothing to build")
    if directory.exists() and any(directory.iterdir()):
        raise ImageBuildError(f"{directory} is not empty; choose another directory or empty it first")
    directory.mkdir(parents=True, exist_ok=True)
    tag = image_tag(image, env_name)
    if len(image.layers) == 1 and isinstance(image.layers[0], DockerfileBuild):
        dockerfile = _from_users_dockerfile(image.layers[0], directory)
        return BuildContext(directory, dockerfile, tag, image.identifier)
    lines = [f"# flyte image {image.identifier}", f"FROM {_base(image)}", "WORKDIR /root"]
    for index, layer in enumerate(image.layers):
        lines += _instructions(layer, index, directory, source_root, env)
    if image.python_version is not None and image.install_flyte:
        from . import __version__

        lines.append(f"RUN pip install --no-cache-dir {shlex.quote(f'flyte-federation=={__version__}')}")
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return BuildContext(directory, dockerfile, tag, image.identifier)


def docker_build(context: BuildContext) -> str:
    """`docker build -t TAG` the context; returns the tag. ImageBuildError when docker is missing or fails."""
    docker = shutil.which("docker")
    if docker is None:
        raise ImageBuildError(f"docker is not on PATH; the build context is ready in {context.directory}")
    done = subprocess.run(
        [docker, "build", "-t", context.tag, "-f", str(context.dockerfile), str(context.directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ImageBuildError(f"docker build of {context.tag} failed: {tail}")
    return context.tag


def _context_dir(image: Image, env: TaskEnvironment | None) -> Path:
    """A fresh directory under the flyte home for this spec's build context."""
    directory = flyte_home() / "builds" / f"{env.name if env else 'image'}-{image.identifier}"
    if directory.exists():
        # The same identifier names the same spec, but the files its layers copy may have changed since.
        shutil.rmtree(directory)
    return directory


@syncify
async def build(image: Image) -> str:
    """Build an image with `docker` (Flyte 2's `flyte.build`); returns its tag. Local files are taken relative to
    `root_dir` (from `flyte.init`) or the working directory."""
    root = current_config().root_dir or Path.cwd()
    context = await asyncio.to_thread(write_build_context, image, _context_dir(image, None), root)
    return await asyncio.to_thread(docker_build, context)


@syncify
async def build_images(*envs: TaskEnvironment) -> dict[str, str]:
    """Build the images of these environments (Flyte 2's `flyte.build_images`); returns env name to image tag.

    Environments whose image is ready-made (`from_base`, `from_ref_name`) are left out.
    """
    root = current_config().root_dir or Path.cwd()
    built: dict[str, str] = {}
    for env in envs:
        image = env.image if isinstance(env.image, Image) else Image.auto()
        if not image.needs_build or image.ref_name is not None:
            continue
        context = await asyncio.to_thread(write_build_context, image, _context_dir(image, env), root, env)
        built[env.name] = await asyncio.to_thread(docker_build, context)
    return built


def _base(image: Image) -> str:
    if image.base_uri is not None:
        return image.base_uri
    assert image.python_version is not None  # a spec to build has a base or a Python version
    major, minor = image.python_version
    return f"python:{major}.{minor}-slim-bookworm"


def _local(source_root: Path, path: str, what: str) -> Path:
    resolved = (source_root / path).resolve()
    if not resolved.exists():
        raise ImageBuildError(f"{what} {path!r} does not exist (looked for {resolved})")
    return resolved


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, ignore=_IGNORED, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _pip(packages: list[str], index_url: str | None = None, extra: tuple[str, ...] = (), pre: bool = False) -> str:
    options = ["--no-cache-dir"]
    if index_url:
        options += ["--index-url", index_url]
    for url in extra:
        options += ["--extra-index-url", url]
    if pre:
        options.append("--pre")
    return "RUN pip install " + " ".join(shlex.quote(part) for part in [*options, *packages])


def _instructions(layer: Layer, index: int, context: Path, root: Path, env: TaskEnvironment | None) -> list[str]:
    """The Dockerfile lines of one layer, copying what it needs into `layers/<index>/` of the context."""
    staged = context / "layers" / str(index)
    stage = f"{_STAGE}/{index}"
    if isinstance(layer, PipPackages):
        return [_pip(list(layer.packages), layer.index_url, layer.extra_index_urls, layer.pre)]
    if isinstance(layer, AptPackages):
        packages = " ".join(shlex.quote(p) for p in layer.packages)
        return [
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{packages} && rm -rf /var/lib/apt/lists/*"
        ]
    if isinstance(layer, EnvVars):
        return [f"ENV {name}={json.dumps(value)}" for name, value in layer.variables]
    if isinstance(layer, Commands):
        return [f"RUN {command}" for command in layer.commands]
    if isinstance(layer, Requirements):
        _copy(_local(root, layer.path, "requirements file"), staged / "requirements.txt")
        return [
            f"COPY layers/{index}/requirements.txt {stage}/requirements.txt",
            _pip(["-r", f"{stage}/requirements.txt"]),
        ]
    if isinstance(layer, SourceFolder):
        _copy(_local(root, layer.src, "source folder"), staged)
        return [f"COPY layers/{index}/ {layer.dst}"]
    if isinstance(layer, CodeBundle):
        return _code_bundle(layer, index, staged, env)
    if isinstance(layer, UVProject):
        return _uv_project(layer, index, staged, root)
    if isinstance(layer, PythonWheels):
        wheels = sorted(_local(root, layer.wheel_dir, "wheel directory").glob("*.whl"))
        if not wheels:
            raise ImageBuildError(f"wheel directory {layer.wheel_dir!r} holds no .whl files")
        for wheel in wheels:
            _copy(wheel, staged / wheel.name)
        pre = ["--pre"] if layer.pre else []
        targets = (
            ["--find-links", stage, layer.package_name] if layer.package_name else [f"{stage}/{w.name}" for w in wheels]
        )
        return [f"COPY layers/{index}/ {stage}/", _pip([*pre, *targets])]
    raise ImageBuildError(f"layer {layer!r} cannot be part of a layered build")


def _code_bundle(layer: CodeBundle, index: int, staged: Path, env: TaskEnvironment | None) -> list[str]:
    if env is None:
        raise ImageBuildError("with_code_bundle() copies an environment's code: build it with build_images(env)")
    bundle = code_bundle(env)
    if not bundle.files:
        raise ImageBuildError(f"environment {env.name} has no tasks, so no code to copy in")
    if layer.copy_style == "all":
        _copy(bundle.root, staged)
    else:
        # The bundle's files: the source root less what its ignore rules leave out, as `flyte deploy` ships it.
        for file in bundle.files:
            _copy(bundle.root / file.relative, staged / file.relative)
    return [f"COPY layers/{index}/ {layer.dst}"]


def _uv_project(layer: UVProject, index: int, staged: Path, root: Path) -> list[str]:
    pyproject = _local(root, layer.pyproject, "pyproject file")
    stage = f"{_STAGE}/{index}"
    if layer.project_install_mode == "install_project":
        _copy(pyproject.parent, staged)
    else:
        _copy(pyproject, staged / "pyproject.toml")
    if layer.uvlock is not None:
        _copy(_local(root, layer.uvlock, "uv.lock"), staged / "uv.lock")
    install_project = layer.project_install_mode == "install_project"
    if layer.uvlock is not None:
        emit = "" if install_project else " --no-emit-project"
        steps = (
            f"uv export --frozen --no-hashes{emit} -o requirements.txt && uv pip install --system -r requirements.txt"
        )
    else:
        steps = "uv pip install --system " + (". " if install_project else "-r pyproject.toml")
    return [f"COPY layers/{index}/ {stage}/", f"RUN pip install --no-cache-dir uv && cd {stage} && {steps.strip()}"]


def _from_users_dockerfile(layer: DockerfileBuild, directory: Path) -> Path:
    source = Path(layer.path)
    if not source.is_file():
        raise ImageBuildError(f"Dockerfile {layer.path} is gone")
    _copy(source.parent, directory)
    dockerfile = directory / source.name
    if hashlib.sha256(dockerfile.read_bytes()).hexdigest() != layer.digest:
        raise ImageBuildError(f"Dockerfile {layer.path} changed since the image spec was made; rebuild the spec")
    return dockerfile
