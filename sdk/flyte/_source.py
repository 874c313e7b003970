"""The files of a program's code bundle: its source root, minus what `.gitignore` and `.flyteignore` leave out.

As in Flyte 2, a bundle carries the whole source root of the program, not only the files that define tasks, so a
task module can import the project's other modules and packages on the worker. The source root is the nearest
folder, from the task's file upwards, that holds a `pyproject.toml` or a `.git`; without one, the file's own folder.

Ignore rules are gitignore's (through `pathspec`, whose `GitIgnoreSpec` follows git's own matching, negations and
directory rules included): every `.gitignore` applies to its folder and below, and `.flyteignore` files add rules
for the bundle only. Some folders are never bundled whatever the rules say: `.git`, `__pycache__`, `.flyte`, and
virtual environments (`.venv`, `venv`, and any folder with a `pyvenv.cfg`), the flyte home (`FLYTE_HOME`), and
extracted bundles (folders with a `.flyte-bundle.json`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pathspec

from ._paths import flyte_home
from ._resources import parse_quantity
from .errors import DeploymentError

ROOT_MARKERS = ("pyproject.toml", ".git")
IGNORE_FILES = (".gitignore", ".flyteignore")
ALWAYS_SKIPPED = frozenset({".git", "__pycache__", ".flyte", ".venv", "venv", ".mypy_cache", ".ruff_cache"})
BUNDLE_MANIFEST = ".flyte-bundle.json"
"""The file in every bundle that says which modules define the tasks and which folders go on `sys.path`."""
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
MAX_BYTES_VARIABLE = "FLYTE_BUNDLE_MAX_SIZE"
"""Overrides the size cap, in bytes or with a unit (`500Mi`, `1Gi`)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a bundle: its path relative to the source root (with `/`) and its size."""

    relative: str
    size: int


def source_root(file: Path) -> Path:
    """The nearest folder holding `file` with a `pyproject.toml` or `.git`, or the file's own folder."""
    start = file.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def max_bundle_bytes() -> int:
    text = os.environ.get(MAX_BYTES_VARIABLE)
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_quantity(text)
    except (TypeError, ValueError):
        raise DeploymentError(f"{MAX_BYTES_VARIABLE}={text!r} is not a size (bytes, or with a unit: 500Mi)") from None


class _Rules:
    """The ignore files in force for one folder: each spec with the folder it applies to, outermost first."""

    def __init__(self, specs: tuple[tuple[str, pathspec.GitIgnoreSpec], ...] = ()):
        self.specs = specs

    def enter(self, folder: Path, relative: str) -> _Rules:
        lines: list[str] = []
        for name in IGNORE_FILES:
            path = folder / name
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()
        if not lines:
            return self
        return _Rules((*self.specs, (relative, pathspec.GitIgnoreSpec.from_lines(lines))))

    def ignored(self, relative: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self.specs:
            inside = relative[len(base) + 1 :] if base else relative
            result = spec.check_file(inside + "/" if is_dir else inside)
            if result.include is not None:
                # A deeper file's rule, or a later line of the same file, decides over an earlier one.
                verdict = result.include
        return verdict


def _skipped_folder(path: Path, home: Path) -> bool:
    return (
        path.name in ALWAYS_SKIPPED
        or (path / "pyvenv.cfg").exists()
        or path == home
        # An extracted bundle (an agent's work directory inside the project): carrying it would nest every
        # earlier bundle in the next one.
        or (path / BUNDLE_MANIFEST).exists()
    )


def list_source_files(root: Path) -> list[SourceFile]:
    """Every file of the bundle under `root`, sorted by relative path."""
    found: list[SourceFile] = []
    # Local state (runs, blobs, a rig's store) can sit inside a project when FLYTE_HOME points there: never code.
    home = flyte_home().resolve()

    def walk(folder: Path, relative: str, rules: _Rules) -> None:
        rules = rules.enter(folder, relative)
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                child = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if not _skipped_folder(path, home) and not rules.ignored(child, is_dir=True):
                        walk(path, child, rules)
                elif entry.is_file() and not rules.ignored(child, is_dir=False):
                    with contextlib.suppress(FileNotFoundError):  # a temporary file that came and went
                        found.append(SourceFile(child, entry.stat().st_size))

    walk(root, "", _Rules())
    return found


def check_size(root: Path, files: list[SourceFile], limit: int) -> None:
    """Refuse a bundle over `limit` bytes, naming the biggest files so the user knows what to ignore."""
    total = sum(f.size for f in files)
    if total <= limit:
        return
    biggest = sorted(files, key=lambda f: -f.size)[:5]
    listing = ", ".join(f"{f.relative} ({human_size(f.size)})" for f in biggest)
    raise DeploymentError(
        f"the code bundle of {root} is {human_size(total)}, over the limit of {human_size(limit)}; "
        f"biggest files: {listing}. Leave files out with .gitignore or .flyteignore, "
        f"or raise the limit with {MAX_BYTES_VARIABLE}"
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
