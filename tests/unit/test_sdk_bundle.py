"""Code bundles: the source root, ignore rules, the size cap and the manifest of the modules that define tasks."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from programs import write_and_import

from flyte._deploy import BUNDLE_MANIFEST, bundle_archive, code_bundle
from flyte._source import list_source_files, source_root
from flyte.cli import main
from flyte.errors import DeploymentError


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _listed(root: Path) -> list[str]:
    return [f.relative for f in list_source_files(root)]


def test_the_source_root_is_the_nearest_folder_with_a_project_marker(tmp_path: Path) -> None:
    _write(tmp_path, {"proj/pyproject.toml": "", "proj/src/pkg/tasks.py": "", "loose/prog.py": ""})
    assert source_root(tmp_path / "proj/src/pkg/tasks.py") == (tmp_path / "proj").resolve()
    assert source_root(tmp_path / "loose/prog.py") == (tmp_path / "loose").resolve()
    (tmp_path / "loose/sub").mkdir()
    (tmp_path / "loose/.git").write_text("gitdir: elsewhere")  # a worktree's .git is a file
    assert source_root(tmp_path / "loose/prog.py") == (tmp_path / "loose").resolve()


def test_gitignore_flyteignore_and_folders_never_bundled(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "*.log\n!keep.log\ndata/\n/build\n",
            ".flyteignore": "notebooks/\n",
            "main.py": "",
            "keep.log": "",
            "noise.log": "",
            "data/big.csv": "",
            "pkg/data/x.csv": "",
            "pkg/build/y.py": "",
            "build/z.py": "",
            "notebooks/a.ipynb": "",
            "pkg/__init__.py": "",
            "pkg/.gitignore": "secret.txt\n!noise.log\n",
            "pkg/secret.txt": "",
            "pkg/noise.log": "",
            "secret.txt": "",
            ".git/config": "",
            "pkg/__pycache__/m.pyc": "",
            ".venv/lib/site.py": "",
            "venv/lib/site.py": "",
            "env2/pyvenv.cfg": "",
            "env2/lib/site.py": "",
            ".flyte/config.yaml": "",
            "work/bundles/0123/.flyte-bundle.json": "{}",
            "work/bundles/0123/main.py": "",
        },
    )
    assert _listed(tmp_path) == [
        ".flyteignore",
        ".gitignore",
        "keep.log",
        "main.py",
        "pkg/.gitignore",
        "pkg/__init__.py",
        "pkg/build/y.py",
        "pkg/noise.log",
        "secret.txt",
    ]


def test_a_bundle_over_the_cap_names_its_biggest_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"pyproject.toml": "", "model.bin": "x" * 5000, "small.py": "x"})
    program = write_and_import(
        tmp_path,
        "capped_prog",
        "import flyte\nenv = flyte.TaskEnvironment('capped_env')\n@env.task\nasync def t() -> None: ...\n",
    )
    monkeypatch.setenv("FLYTE_BUNDLE_MAX_SIZE", "4Ki")
    with pytest.raises(DeploymentError, match=r"over the limit of 4\.0 KiB; biggest files: model\.bin \(4\.9 KiB\)"):
        code_bundle(program.env)
    monkeypatch.setenv("FLYTE_BUNDLE_MAX_SIZE", "1Mi")
    assert code_bundle(program.env).size > 5000


def test_the_manifest_names_task_modules_and_their_import_roots(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": "",
            "src/bundlepkg/__init__.py": "",
            "src/bundlepkg/helpers.py": "def double(x: int) -> int:\n    return 2 * x\n",
            "src/bundlepkg/tasks.py": (
                "import flyte\nfrom bundlepkg.helpers import double\n"
                "env = flyte.TaskEnvironment('bundle_manifest_env')\n"
                "@env.task\nasync def t(x: int) -> int:\n    return double(x)\n"
            ),
        },
    )
    import sys

    sys.path.insert(0, str(tmp_path / "src"))
    try:
        import bundlepkg.tasks  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path / "src"))
    bundle = code_bundle(bundlepkg.tasks.env)
    assert bundle.root == tmp_path.resolve()
    assert bundle.modules == ("bundlepkg.tasks",)
    assert bundle.paths == ("src", "")
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(bundle_archive(bundle)))) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(BUNDLE_MANIFEST)
        assert manifest is not None
        assert json.loads(manifest.read()) == {"modules": ["bundlepkg.tasks"], "paths": ["src", ""]}
    assert "src/bundlepkg/helpers.py" in names
    assert bundle_archive(bundle) == bundle_archive(code_bundle(bundlepkg.tasks.env)), "reproducible"


def test_flyte_deploy_dry_run_lists_the_files_with_sizes_and_total(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "helpers_for_dry.py": "VALUE = 1\n",
            "dry_prog.py": (
                "import flyte\nimport helpers_for_dry\nenv = flyte.TaskEnvironment('dry_env')\n"
                "@env.task\nasync def t() -> int:\n    return helpers_for_dry.VALUE\n"
            ),
        },
    )
    result = CliRunner().invoke(main, ["deploy", "--dry-run", str(tmp_path / "dry_prog.py"), "dry_env"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "Deployment of environment dry_env" in lines[0]
    assert "(dry run)" in lines[0]
    assert any(line.split() == ["10", "B", "helpers_for_dry.py"] for line in lines), result.output
    assert any(line.split()[2:] == ["dry_prog.py"] for line in lines), result.output
    assert f"total, 2 files from {tmp_path.resolve()}" in lines[-1]


def test_a_task_from_a_notebook_cell_is_refused_with_a_reason(tmp_path: Path) -> None:
    import linecache

    import flyte

    cell = str(tmp_path / "ipykernel_1" / "cell.py")  # as Jupyter names cells: in linecache, never on disk
    source = "async def from_cell() -> int:\n    return 1\n"
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source, cell, "exec"), namespace)
    env = flyte.TaskEnvironment("notebook_cell_env")
    env.task(namespace["from_cell"])  # type: ignore[arg-type]
    with pytest.raises(DeploymentError, match=r"not a file on disk \(a notebook cell\?\)"):
        code_bundle(env)
