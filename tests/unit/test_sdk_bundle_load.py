"""Loading a code bundle as a worker does: a module that fails at import is the user's error, with its traceback,
and is tried again on the next load; modules see the command line of `python module.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import flyte.errors
from flyte._runtime._bundle import BundleLoadError, load_bundle

pytestmark = pytest.mark.timeout(30)


def test_a_module_reading_argv_sees_its_own_path_and_fails_as_python_would(tmp_path: Path) -> None:
    (tmp_path / "argv_reader.py").write_text("import sys\nSEEN = list(sys.argv)\nSIZE = int(sys.argv[1])\n")
    before = list(sys.argv)
    with pytest.raises(BundleLoadError) as caught:
        load_bundle(tmp_path)
    assert isinstance(caught.value.error, IndexError)
    assert sys.argv == before, "the worker's own argv is back after the import"
    assert "argv_reader" not in sys.modules, "a module that failed is not left half-imported"
    info = flyte.errors.error_info(caught.value.error)
    assert info.code == "IndexError"
    assert info.traceback is not None
    assert info.traceback.splitlines()[1].strip().startswith(f'File "{tmp_path / "argv_reader.py"}"'), info.traceback
    # The next load runs the module again (as `import` retries a failed import) and fails the same way.
    with pytest.raises(BundleLoadError):
        load_bundle(tmp_path)


def test_sys_exit_at_import_is_an_error_not_an_exit(tmp_path: Path) -> None:
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit('usage: exits_at_import.py N')\n")
    with pytest.raises(BundleLoadError) as caught:
        load_bundle(tmp_path)
    assert isinstance(caught.value.error, SystemExit)
    assert "usage: exits_at_import.py N" in str(caught.value)
    assert "importing exits_at_import.py" in str(caught.value)


def test_modules_see_their_own_path_as_argv(tmp_path: Path) -> None:
    (tmp_path / "argv_echo_mod.py").write_text("import sys\nSEEN = list(sys.argv)\n")
    load_bundle(tmp_path)
    assert [str((tmp_path / "argv_echo_mod.py").resolve())] == sys.modules["argv_echo_mod"].SEEN
    del sys.modules["argv_echo_mod"]
