"""Images on the process backend: a virtualenv per image spec that adds pip packages, built once per agent.

A pod runs its environment's image; a local process has no image, so what an image adds that a process can use is
made here: the `pip_packages` layers become a virtualenv under the agent's work directory, keyed by a digest of
those layers and the agent's interpreter, and attempts of that environment run with its Python. `env_vars` layers
become environment variables (under the task's own). Other layers (apt packages, commands, source folders,
requirements files) need a container build and are not applied here; docs/settings.md says so.

Build: `uv venv` + `uv pip install` when `uv` is on PATH, else `python -m venv --system-site-packages` + its pip. A
`.pth` file chains the agent's own site-packages after the venv's, so the worker runtime (the `flyte` SDK and what
it needs) imports in the venv even when the agent itself runs in one. The venv is built in a temporary folder and
renamed into place complete, so a crash mid-build leaves nothing half-made that looks ready. Concurrent attempts of
the same spec wait for the one build. A package that cannot be installed fails the build, naming it from the
installer's own words; the attempt then fails at once as the user's error (no retry installs it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import site
import sys
import time
from pathlib import Path
from typing import Any

from agent._settings import SettingsError

log = logging.getLogger("flyte.agent.images")

BUILD_TIMEOUT = 900.0
"""Seconds a venv build may take before it is given up as failed."""
_TAIL = 1500
"""Characters of the installer's output kept in a failure's message."""


class ImageBuildError(SettingsError):
    def __init__(self, message: str) -> None:
        super().__init__("ImageBuildFailed", message)


PROVIDED = frozenset({"flyte", "unionai-reuse"})
"""Distributions the platform itself gives every worker, never installed into an image's venv: the `flyte` SDK is
ours (PyPI's would hide it: the venv's site-packages come first), and reusable environments are built in (a Flyte 2
image adds `unionai-reuse` for them, as the brief's `reuse.py` does)."""
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _provided(requirement: str) -> bool:
    match = _NAME.match(requirement)
    return match is not None and re.sub(r"[-_.]+", "-", match.group(1)).lower() in PROVIDED


def pip_layers(image_spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The spec's pip layers, less what the platform provides; a layer left with nothing to install is dropped."""
    layers = []
    for layer in (image_spec or {}).get("layers", []):
        if layer.get("kind") != "pip_packages":
            continue
        wanted = [p for p in layer.get("packages", []) if not _provided(str(p))]
        if wanted:
            layers.append({**layer, "packages": wanted})
    return layers


def image_env(image_spec: dict[str, Any] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for layer in (image_spec or {}).get("layers", []):
        if layer.get("kind") == "env_vars":
            env.update({str(name): str(value) for name, value in layer.get("variables", [])})
    return env


class Venvs:
    """The agent's virtualenvs, one per spec digest, each built once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._building: dict[str, asyncio.Future[str]] = {}

    @staticmethod
    def digest(layers: list[dict[str, Any]]) -> str:
        canonical = json.dumps({"layers": layers, "python": sys.executable}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _python(self, digest: str) -> Path:
        return self.directory / digest / "bin" / "python"

    def ready(self, digest: str) -> bool:
        return (self.directory / digest / ".complete").exists()

    async def python_for(self, layers: list[dict[str, Any]]) -> str:
        """The interpreter of the venv for these pip layers, built first if this agent has not built it yet."""
        digest = self.digest(layers)
        if self.ready(digest):
            return str(self._python(digest))
        future = self._building.get(digest)
        if future is None:
            future = self._building[digest] = asyncio.ensure_future(self._build(digest, layers))
            future.add_done_callback(lambda _: self._building.pop(digest, None))
        return await asyncio.shield(future)

    async def _build(self, digest: str, layers: list[dict[str, Any]]) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        building = self.directory / f".{digest}.{os.getpid()}.{time.monotonic_ns()}"
        packages = [package for layer in layers for package in layer.get("packages", [])]
        started = time.monotonic()
        try:
            await self._create(building)
            await self._install(building, layers, packages)
            (building / ".complete").write_text(json.dumps({"layers": layers}))
            target = self.directory / digest
            try:
                building.rename(target)
            except OSError:
                if not self.ready(digest):  # else another process built it meanwhile: use that one
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        log.info("built the venv %s for %s in %.1fs", digest, " ".join(packages), time.monotonic() - started)
        return str(self._python(digest))

    async def _create(self, venv: Path) -> None:
        uv = shutil.which("uv")
        if uv is not None:
            await _run([uv, "venv", "--quiet", "--system-site-packages", "--python", sys.executable, str(venv)])
        else:
            await _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
        python = venv / "bin" / "python"
        purelib = (await _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])).strip()
        await asyncio.to_thread(_chain_site_packages, Path(purelib))

    async def _install(self, venv: Path, layers: list[dict[str, Any]], packages: list[str]) -> None:
        python = str(venv / "bin" / "python")
        uv = shutil.which("uv")
        for layer in layers:
            options: list[str] = []
            if layer.get("index_url"):
                options += ["--index-url", str(layer["index_url"])]
            for url in layer.get("extra_index_urls") or []:
                options += ["--extra-index-url", str(url)]
            if layer.get("pre"):
                options.append("--pre")
            wanted = [str(package) for package in layer.get("packages", [])]
            if uv is not None:
                command = [uv, "pip", "install", "--python", python, *options, *wanted]
            else:
                command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *options]
                command += wanted
            try:
                await _run(command)
            except ImageBuildError as error:
                raise ImageBuildError(f"could not install pip packages {wanted} (of {packages}): {error}") from None
        # A package that depends on PyPI's `flyte` brought it in: take it out, so the worker imports ours.
        present = await _run(
            [python, "-c", "import importlib.metadata as m; print(any(m.distributions(name='flyte')))"]
        )
        if present.strip() == "True":
            if uv is not None:
                await _run([uv, "pip", "uninstall", "--python", python, "flyte"])
            else:
                await _run([python, "-m", "pip", "uninstall", "--yes", "--disable-pip-version-check", "flyte"])


def _chain_site_packages(purelib: Path) -> None:
    """The agent's site-packages after the venv's own: the worker runtime imports from there."""
    parents = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
    lines = [f"import site; site.addsitedir({parent!r})" for parent in parents]
    (purelib / "_flyte_agent_site.pth").write_text("\n".join(lines) + "\n")


async def _run(command: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), BUILD_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ImageBuildError(f"{command[0]} ran past {BUILD_TIMEOUT:g}s") from None
    if process.returncode != 0:
        errors = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        # The installer's own ERROR lines name what failed; otherwise its last words.
        named = [line for line in errors if line.startswith(("ERROR", "error"))] or errors[-5:]
        raise ImageBuildError("; ".join(named)[-_TAIL:] or f"exit code {process.returncode}")
    return out.decode(errors="replace")
