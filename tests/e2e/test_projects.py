"""Programs shaped like real projects, through a rig of real processes: a task module importing the project's own
modules and packages (the bundle carries the whole source root), and another team's deployed task called by name
from a program that never imports its code."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, start_rig

import flyte
import flyte.errors
import flyte.remote

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


SERVICE = {
    "pyproject.toml": '[project]\nname = "features-svc"\nversion = "0.1.0"\n',
    "features_math.py": """
        def spread(x: int, scale: float) -> list[float]:
            return [x * scale, x * scale * 2]
    """,
    "features.py": """
        import flyte
        from pydantic import BaseModel

        from features_math import spread

        env = flyte.TaskEnvironment("features")


        class Stats(BaseModel):
            total: float
            count: int


        @env.task
        async def featurize(x: int, scale: float = 1.0) -> list[float]:
            return spread(x, scale)


        @env.task
        async def summarize(values: list[float]) -> Stats:
            return Stats(total=sum(values), count=len(values))
    """,
}

CALLER = {
    "pyproject.toml": '[project]\nname = "reports"\nversion = "0.1.0"\n',
    "report.py": """
        import importlib.util
        import json

        import flyte
        import flyte.errors
        from flyte import remote

        env = flyte.TaskEnvironment("reports")


        @env.task
        async def main(x: int) -> str:
            featurize = remote.Task.get("features.featurize", auto_version="latest")
            values = await featurize(x=x, scale=0.5)
            stats = await remote.Task.get("features.summarize", auto_version="latest")(values=values)
            retried = await featurize.override(retries=1)(x)
            try:
                await featurize(x="many")
                refused = "nothing"
            except flyte.errors.ValueEncodingError as error:
                refused = error.message
            return json.dumps(
                {
                    "values": values,
                    "stats": stats,
                    "retried": retried,
                    "refused": refused,
                    "has_service_code": importlib.util.find_spec("features") is not None,
                }
            )


        if __name__ == "__main__":
            flyte.init_from_config()
            run = flyte.run(main, 4)
            print(run.outputs()[0])
            print(run.name)
    """,
}


def test_a_caller_in_another_project_calls_a_deployed_task_by_name(rig: Rig) -> None:
    service = write_project(rig.cwd / "features_svc", SERVICE)
    deployed = rig.flyte("deploy", str(service / "features.py"), "features")
    assert deployed.returncode == 0, deployed.stderr
    listed = Rig(rig.cwd, {**rig.env, "COLUMNS": "200"}).flyte("get", "tasks")
    (row,) = [line for line in listed.stdout.splitlines() if "features.featurize" in line]
    assert "featurize(x: int, scale: float = 1.0) -> list[float]" in row, listed.stdout

    caller = write_project(rig.cwd / "reports", CALLER)
    result = rig.python(caller / "report.py")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-2])
    assert answer["values"] == [2.0, 4.0]
    assert answer["stats"] == {"total": 6.0, "count": 2}, "a model output arrives as its JSON form"
    assert answer["retried"] == [4.0, 8.0]
    assert answer["refused"] == "input 'x' of task features.featurize expects integer, got str 'many'"
    assert answer["has_service_code"] is False


def test_flyte_run_deployed_task_from_the_cli_and_the_sdk(rig: Rig) -> None:
    service = write_project(rig.cwd / "features_svc", SERVICE)
    assert rig.flyte("deploy", str(service / "features.py"), "features").returncode == 0
    ran = rig.flyte("run", "deployed-task", "features.featurize", "--x", "3", "--scale", "2")
    assert ran.returncode == 0, ran.stderr
    assert "output: [6.0, 12.0]" in ran.stdout
    bad = rig.flyte("run", "deployed-task", "features.featurize", "--x", "three")
    assert bad.returncode == 2
    assert "input 'x' of task features.featurize expects integer, got str 'three'" in bad.stderr
    missing = rig.flyte("run", "deployed-task", "features.nothing_here", "--x", "3")
    assert missing.returncode == 1
    assert "no deployed task 'features.nothing_here'" in missing.stderr

    rig.connect()
    run = flyte.run(flyte.remote.Task.get("features.featurize", auto_version="latest"), 5)
    assert run.outputs() == ([5.0, 10.0],)
    with pytest.raises(flyte.errors.ValueEncodingError, match="expects array of number"):
        flyte.run(flyte.remote.Task.get("features.summarize"), values="1,2")


def test_a_task_deployed_in_another_project_runs_by_project_and_version(rig: Rig) -> None:
    service = write_project(rig.cwd / "features_svc", SERVICE)
    team = Rig(rig.cwd, {**rig.env, "FLYTE_PROJECT": "features-team"})
    deployed = team.flyte("deploy", str(service / "features.py"), "features", "--version", "team-v1")
    assert deployed.returncode == 0, deployed.stderr
    rig.connect()
    pinned = flyte.remote.Task.get("features.featurize", version="team-v1", project="features-team")
    run = flyte.run(pinned, x=1, scale=3)
    assert run.outputs() == ([3.0, 6.0],)
    with pytest.raises(flyte.errors.RemoteTaskNotFoundError, match=r"no deployed task 'features\.featurize'"):
        flyte.run(flyte.remote.Task.get("features.featurize", version="team-v9", project="features-team"), x=1)
