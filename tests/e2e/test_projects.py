"""Programs shaped like real projects, through a rig of real processes: a task module importing the project's own
modules and packages (the bundle carries the whole source root), and another team's deployed task called by name
from a program that never imports its code."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, start_rig

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("projects"))
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def write_project(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


PROJECT = {
    "pyproject.toml": '[project]\nname = "scoring"\nversion = "0.1.0"\n',
    ".gitignore": "*.csv\n",
    "raw.csv": "ignored,by,gitignore\n",
    "scoring_helpers.py": """
        def weight() -> int:
            return 10
    """,
    "scorelib/__init__.py": "from scorelib.ops import scale\n",
    "scorelib/ops.py": """
        from scoring_helpers import weight

        def scale(x: int) -> int:
            return x * weight()
    """,
    "score_main.py": """
        import os

        import flyte
        import scoring_helpers
        from scorelib import scale

        env = flyte.TaskEnvironment("scoring")


        @env.task
        async def score(x: int) -> int:
            return scale(x) + scoring_helpers.weight()


        @env.task
        async def main(x: int) -> str:
            ignored = os.path.exists("raw.csv")
            return f"{await score(x)} csv={ignored}"


        if __name__ == "__main__":
            flyte.init_from_config()
            run = flyte.run(main, 4)
            print(run.outputs()[0])
            print(run.name)
    """,
}


def test_a_task_module_imports_the_projects_helper_module_and_package(rig: Rig) -> None:
    project = write_project(rig.cwd / "scoring", PROJECT)
    result = rig.python(project / "score_main.py")
    assert result.returncode == 0, result.stderr
    output, _run_name = result.stdout.strip().splitlines()[-2:]
    assert output == "50 csv=False", "the helpers came along; the .gitignored file did not"
    again = rig.python(project / "score_main.py")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-2] == "50 csv=False"
