"""Tests for the `flyte` command line: `--version`, `flyte run` (parameters, outcomes, errors) and `create config`.

Most tests drive the click group in-process with CliRunner; a few start the real `flyte` console script, the
only way to see exit codes, Ctrl-C and `python -m flyte.cli` as a user does. Task programs are written into
tmp_path by each test.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from processes import ctrl_c_reaches_children
from waiting import assert_eventually

import flyte
from flyte._config import load_config
from flyte._run import RunContext
from flyte._run_state import RunOptions
from flyte.cli import main
from flyte.cli._load import find_task, load_module
from flyte.cli._output import format_duration
from flyte.cli._progress import watch

GREET = '''
import flyte

env = flyte.TaskEnvironment("cli_greet")


@env.task
async def greet(name: str, times: int = 2) -> str:
    """Greet someone, more than once."""
    return " ".join([f"Hello, {name}!"] * times)


@env.task
def pair(a: int, b: int) -> tuple[int, str]:
    return a + b, f"{a}+{b}"


not_a_task = 42

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run under flyte run")
'''
GREET_SIGNATURE = "greet(name: str, times: int = 2) -> str"

TYPED = """
from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

import flyte

env = flyte.TaskEnvironment("cli_typed")


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Segment:
    start: Point
    end: Point


class Settings(BaseModel):
    label: str
    weights: list[float] = []


@env.task
async def describe(
    count: int,
    ratio: float,
    loud: bool,
    tags: list[str],
    segment: Segment,
    settings: Settings,
    dry_run: bool = False,
    note: str = "none",
    limit: int | None = None,
) -> dict[str, Any]:
    return {
        "count": count,
        "ratio": ratio,
        "loud": loud,
        "tags": tags,
        "segment": dataclasses.asdict(segment),
        "settings": settings.model_dump(),
        "dry_run": dry_run,
        "note": note,
        "limit": limit,
        "types": [type(v).__name__ for v in (count, ratio, loud, segment.start, settings)],
    }
"""
TYPED_REQUIRED: dict[str, str | None] = {
    "--count": "3",
    "--ratio": "0.5",
    "--loud": None,
    "--tags": '["a", "b"]',
    "--segment": '{"start": {"x": 1, "y": 2}, "end": {"x": 3, "y": 4}}',
    "--settings": '{"label": "s", "weights": [1, 2.5]}',
}


def typed_args(without: str = "") -> list[str]:
    """The required parameters of TYPED's task, leaving one option out for a test to give its own way."""
    args: list[str] = []
    for option, value in TYPED_REQUIRED.items():
        if option != without:
            args += [option] if value is None else [option, value]
    return args


FAILING = """
import flyte

env = flyte.TaskEnvironment("cli_failing")


class BadInputError(Exception):
    pass


@env.task
async def child(x: int) -> int:
    raise BadInputError(f"cannot use {x}")


@env.task
async def parent(x: int) -> int:
    return await child(x)
"""

HANGING = """
import asyncio
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("cli_hanging")


@env.task
async def main() -> int:
    Path(os.environ["CLI_TEST_MARKER"]).touch()
    await asyncio.sleep(120)
    return 0
"""


@pytest.fixture(autouse=True)
def _isolated_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path (no config found there) and forget the programs each test imported."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(str(tmp_path)):
            del sys.modules[name]


def write_program(directory: Path, source: str, name: str = "prog") -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def stdout_fields(result: Result) -> dict[str, str]:
    """The `key: value` lines `flyte run` prints on stdout."""
    fields = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def flyte_script() -> str:
    beside = Path(sys.executable).with_name("flyte")
    found = str(beside) if beside.exists() else shutil.which("flyte")
    assert found, "the flyte console script is not installed"
    return found


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"flyte, version {flyte.__version__}"


def test_version_from_console_script_and_module() -> None:
    for command in ([flyte_script()], [sys.executable, "-m", "flyte.cli"]):
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, env={**os.environ}, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"flyte, version {flyte.__version__}"


HEAVY = ("pydantic", "aiohttp", "rich", "yaml", "cloudpickle", "opentelemetry", "flyte._run", "flyte.cli._run")


@pytest.mark.parametrize("argument", ["--version", "--help"])
def test_version_and_help_import_no_heavy_module(argument: str) -> None:
    """`flyte --version` and `--help` stay fast (well under 300 ms) by importing the commands only when one runs."""
    program = textwrap.dedent(f"""
        import json, sys
        from flyte.cli import main
        try:
            main([{argument!r}], prog_name="flyte")
        except SystemExit as done:
            assert done.code == 0, done.code
        print(json.dumps(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert {name for name in HEAVY if name in loaded} == set()
    assert "click" in loaded


def test_help_lists_each_command_as_the_command_describes_itself() -> None:
    from flyte.cli._main import COMMANDS

    listed = invoke("--help")
    assert listed.exit_code == 0
    for name, (_, help_text) in COMMANDS.items():
        command = main.get_command(click.Context(main), name)
        assert command is not None
        assert command.get_short_help_str(200) == help_text, f"COMMANDS[{name!r}] is out of date"
        assert name in listed.stdout
    assert sorted(COMMANDS) == sorted(main.list_commands(click.Context(main)))
    assert {"placement", "clusters"} <= set(invoke("get", "--help").stdout.split())


def test_run_prints_name_url_phase_and_output(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", "--local", program, "greet", "--name", "World", "--times", "1")

    assert result.exit_code == 0, result.output
    fields = stdout_fields(result)
    assert fields["phase"] == "succeeded"
    assert json.loads(fields["output"]) == "Hello, World!"
    assert Path(fields["url"]).is_dir()
    assert fields["run"] == Path(fields["url"]).name
    # Not a terminal: one summary line instead of a live display.
    assert result.stderr.strip().startswith(f"run {fields['run']} succeeded in ")


def test_run_applies_defaults_and_accepts_equals_form(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "greet", "--name=Ada")

    assert result.exit_code == 0, result.output
    assert json.loads(stdout_fields(result)["output"]) == "Hello, Ada! Hello, Ada!"


def test_run_converts_typed_parameters(tmp_path: Path) -> None:
    program = write_program(tmp_path, TYPED)

    result = invoke("run", "--local", program, "describe", *typed_args(), "--dry-run", "--limit", "7")

    assert result.exit_code == 0, result.output
    assert json.loads(stdout_fields(result)["output"]) == {
        "count": 3,
        "ratio": 0.5,
        "loud": True,
        "tags": ["a", "b"],
        "segment": {"start": {"x": 1, "y": 2}, "end": {"x": 3, "y": 4}},
        "settings": {"label": "s", "weights": [1.0, 2.5]},
        "dry_run": True,
        "note": "none",
        "limit": 7,
        "types": ["int", "float", "bool", "Point", "Settings"],
    }


@pytest.mark.parametrize(
    ("flags", "loud", "dry_run"),
    [
        (["--loud", "false", "--no-dry-run"], False, False),
        (["--loud=true", "--dry_run", "true"], True, True),
        (["--no-loud", "--dry-run=no"], False, False),
    ],
)
def test_bool_flag_spellings(tmp_path: Path, flags: list[str], loud: bool, dry_run: bool) -> None:
    program = write_program(tmp_path, TYPED)
    result = invoke("run", program, "describe", *typed_args(without="--loud"), *flags)

    assert result.exit_code == 0, result.output
    output = json.loads(stdout_fields(result)["output"])
    assert (output["loud"], output["dry_run"]) == (loud, dry_run)


def test_multiple_outputs_are_printed_one_per_line(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "pair", "--a", "2", "--b", "-5")

    assert result.exit_code == 0, result.output
    fields = stdout_fields(result)
    assert (json.loads(fields["output[0]"]), json.loads(fields["output[1]"])) == (-3, "2+-5")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--nme", "World"], "unknown parameter --nme (did you mean --name?)"),
        (["--name", "World", "--times", "many"], "invalid value 'many' for --times (int)"),
        (["--times", "3"], "missing required parameter --name"),
        (["--name"], "parameter --name needs a value"),
        (["World"], "unexpected argument 'World'"),
        (["--name", "a", "--name", "b"], "--name is given more than once"),
        (["--name", "a", "--local"], "flyte run's own --local goes before FILE"),
    ],
)
def test_bad_parameters_give_one_usage_line(tmp_path: Path, args: list[str], expected: str) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "greet", *args)

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert expected in lines[0]
    assert lines[0].endswith(f"; usage: {GREET_SIGNATURE}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--segment", '{"start": {"x": 1, "y": 2}, "end": {"x": 3}}'], "end.y: Field required"),
        (["--tags", "[1, 2"], "Invalid JSON"),
        (["--ratio", "fast"], "Input should be a valid number"),
        (["--settings", "label=s"], "(give it as JSON)"),
        (["--loud", "maybe"], "expected true or false"),
    ],
)
def test_values_that_do_not_convert(tmp_path: Path, args: list[str], expected: str) -> None:
    program = write_program(tmp_path, TYPED)
    result = invoke("run", program, "describe", *typed_args(without=args[0]), *args)

    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert "usage: describe(count: int" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_task_lists_the_tasks(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "gret")

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: no task 'gret' in {program}; its tasks are: greet, pair"]


def test_attribute_that_is_not_a_task(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "not_a_task")

    assert result.exit_code == 2
    assert "'not_a_task'" in result.stderr
    assert "is not a task (it is a int)" in result.stderr


def test_task_found_by_full_name_and_main_block_not_run(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "cli_greet.greet", "--name", "X", "--times", "1")

    assert result.exit_code == 0, result.output
    assert json.loads(stdout_fields(result)["output"]) == "Hello, X!"


def test_file_parameter_takes_a_local_path(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("three words here")
    program = write_program(
        tmp_path,
        """
        import flyte
        from flyte.io import File

        env = flyte.TaskEnvironment("cli_files")


        @env.task
        def count_words(doc: File) -> int:
            with doc.open_sync("r") as handle:
                return len(handle.read().split())
        """,
    )

    counted = invoke("run", program, "count_words", "--doc", data)
    missing = invoke("run", program, "count_words", "--doc", tmp_path / "absent.txt")

    assert counted.exit_code == 0, counted.output
    assert stdout_fields(counted)["output"] == "3"
    assert missing.exit_code == 2
    assert "usage: count_words(doc: File) -> int" in missing.stderr


def test_task_help_lists_parameters(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", program, "greet", "--help")

    assert result.exit_code == 0
    assert GREET_SIGNATURE in result.stdout
    assert "Greet someone, more than once." in result.stdout
    assert "--times VALUE" in result.stdout
    assert "default: 2" in result.stdout


def test_failing_task_exits_1_with_its_error(tmp_path: Path) -> None:
    program = write_program(tmp_path, FAILING)

    result = invoke("run", "--local", program, "parent", "--x", "4")

    assert result.exit_code == 1
    fields = stdout_fields(result)
    assert fields["phase"] == "failed"
    assert "output" not in fields
    last = result.stderr.splitlines()[-1]
    assert last == f"Error: run {fields['run']} failed: BadInputError: cannot use 4"
    assert "Traceback" in result.stderr


def test_program_that_fails_to_import(tmp_path: Path) -> None:
    program = write_program(tmp_path, "import flyte\n\nraise RuntimeError('broken at import')\n")

    result = invoke("run", program, "main")

    assert result.exit_code == 1
    assert f'File "{program}", line 3' in result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: could not load {program}: RuntimeError: broken at import"


def test_program_imports_its_sibling_modules(tmp_path: Path) -> None:
    (tmp_path / "helpers_for_cli.py").write_text("def shout(s: str) -> str:\n    return s.upper()\n")
    program = write_program(
        tmp_path,
        """
        import flyte
        from helpers_for_cli import shout

        env = flyte.TaskEnvironment("cli_sibling")


        @env.task
        def loud(word: str) -> str:
            return shout(word)
        """,
    )

    result = invoke("run", program, "loud", "--word", "hey")

    assert result.exit_code == 0, result.output
    assert stdout_fields(result)["output"] == '"HEY"'


def test_run_name_and_labels_reach_the_run(tmp_path: Path, isolated_home: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke(
        "run", "--name", "named-run", "--label", "team=ml", "--label", "tier=", program, "greet", "--name", "Y"
    )

    assert result.exit_code == 0, result.output
    assert stdout_fields(result)["run"] == "named-run"
    summary = json.loads((isolated_home / "local" / "runs" / "named-run" / "run.json").read_text())
    assert summary["labels"] == {"team": "ml", "tier": ""}


@pytest.mark.parametrize(
    ("args", "complaint"), [(["--label", "novalue"], "Invalid value"), (["--name", "../escape"], "run name")]
)
def test_bad_run_options(tmp_path: Path, args: list[str], complaint: str, isolated_home: Path) -> None:
    program = write_program(tmp_path, GREET)

    result = invoke("run", *args, program, "greet", "--name", "Y")

    assert result.exit_code == 2
    assert complaint in result.stderr
    assert not (isolated_home / "local" / "escape").exists()


def test_an_unreachable_gateway_is_one_line_and_local_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = write_program(tmp_path, GREET)
    monkeypatch.setenv("FLYTE_ENDPOINT", "http://127.0.0.1:9")

    remote = invoke("run", program, "greet", "--name", "Z")
    local = invoke("run", "--local", program, "greet", "--name", "Z")

    listing = invoke("get", "runs")
    shown = invoke("get", "run", "r1")
    following = invoke("get", "run", "r1", "--follow")

    assert remote.exit_code == listing.exit_code == shown.exit_code == following.exit_code == 1
    unreachable = (
        "cannot reach the gateway at http://127.0.0.1:9 (connection refused); is it running? flyte rig up starts one"
    )
    assert len(remote.stderr.splitlines()) == 1
    assert remote.stderr.startswith("Error: deploying cli_greet version ")
    assert remote.stderr.rstrip().endswith(f": {unreachable}")
    assert listing.stderr.splitlines() == shown.stderr.splitlines() == [f"Error: {unreachable}"]
    assert following.stderr.splitlines() == [f"Error: {unreachable}"]
    assert local.exit_code == 0, local.output


def test_run_says_when_it_runs_locally_for_want_of_a_config(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    implicit = invoke("run", program, "greet", "--name", "N")
    explicit = invoke("run", "--local", program, "greet", "--name", "N")
    (tmp_path / "config.yaml").write_text("task:\n  project: p\n")
    no_endpoint = invoke("run", program, "greet", "--name", "N")

    assert implicit.exit_code == explicit.exit_code == no_endpoint.exit_code == 0
    note = implicit.stderr.splitlines()[0]
    assert note.startswith("no config found (looked in ./config.yaml, ./.flyte/config.yaml, ")
    assert note.endswith("): running locally; use --local to say so, or flyte rig up / flyte create config")
    assert len(explicit.stderr.splitlines()) == 1, "--local adds nothing to the summary line"
    assert no_endpoint.stderr.splitlines()[0].startswith("./config.yaml names no endpoint: running locally; ")


def test_detach_is_refused_where_the_run_would_live_in_this_process(tmp_path: Path, isolated_home: Path) -> None:
    program = write_program(tmp_path, GREET)

    with_local = invoke("run", "--local", "--detach", program, "greet", "--name", "N")
    without_gateway = invoke("run", "--detach", program, "greet", "--name", "N")
    follow_local = invoke("get", "run", "some-run", "--follow")

    assert with_local.exit_code == without_gateway.exit_code == 2
    assert with_local.stderr.splitlines() == [
        "Error: --detach cannot be used with --local: a local run lives in this process and ends with it"
    ]
    assert without_gateway.stderr.splitlines()[-1] == (
        "Error: --detach needs a gateway: no config names an endpoint, so the run would be local"
    )
    assert follow_local.exit_code == 1
    assert follow_local.stderr.splitlines() == [
        "Error: local runs end with the process that runs them; following needs a gateway"
    ]
    assert not list((isolated_home / "local" / "runs").glob("*")), "nothing was started"


def test_get_run_shows_a_local_run(tmp_path: Path, isolated_home: Path) -> None:
    program = write_program(tmp_path, GREET)
    done = invoke("run", "--local", "--name", "shown-run", program, "greet", "--name", "N")
    assert done.exit_code == 0, done.output

    shown = invoke("get", "run", "shown-run")

    assert shown.exit_code == 0, shown.output
    fields = stdout_fields(shown)
    assert (fields["run"], fields["task"], fields["phase"]) == ("shown-run", "cli_greet.greet", "succeeded")
    assert fields["url"] == stdout_fields(done)["url"]


def test_live_progress_renders_on_a_terminal(tmp_path: Path) -> None:
    from rich.console import Console

    task = find_task(load_module(write_program(tmp_path, GREET)), "greet", "prog.py")
    started = RunContext("local", RunOptions(name="live-run")).start(task, (), {"name": "Live"})
    screen = io.StringIO()

    watch(started, interactive=True, console=Console(file=screen, force_terminal=True, color_system=None, width=120))

    drawn = screen.getvalue()
    assert "live-run" in drawn
    assert "1 action: 0 queued" in drawn
    assert "succeeded" in drawn
    assert "cli_greet.greet" in drawn
    assert started._state.listeners == []


def test_create_config_round_trips(tmp_path: Path) -> None:
    result = invoke(
        "create", "config", "--endpoint", "gateway.example.com:8443", "--project", "p", "--domain", "d", "--insecure"
    )

    assert result.exit_code == 0, result.output
    written = tmp_path / ".flyte" / "config.yaml"
    assert result.stdout.strip() == f"Wrote {written}"
    config = load_config(written)
    assert (config.endpoint, config.project, config.domain, config.insecure) == (
        "http://gateway.example.com:8443",
        "p",
        "d",
        True,
    )


def test_create_config_marks_an_http_endpoint_insecure(tmp_path: Path) -> None:
    result = invoke("create", "config", "--endpoint", "http://127.0.0.1:8080")

    assert result.exit_code == 0, result.output
    assert "insecure: true" in (tmp_path / ".flyte" / "config.yaml").read_text()


def test_create_config_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "flyte.yaml"
    assert invoke("create", "config", "--endpoint", "https://one.example", "-o", target).exit_code == 0

    refused = invoke("create", "config", "--endpoint", "https://two.example", "--output", target)
    forced = invoke("create", "config", "--endpoint", "https://two.example", "--output", target, "--force")

    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [f"Error: config file {target} already exists; pass --force to overwrite it"]
    assert forced.exit_code == 0, forced.output
    assert load_config(target).endpoint == "https://two.example"


def test_create_config_rejects_a_bad_endpoint(tmp_path: Path) -> None:
    result = invoke("create", "config", "--endpoint", "ftp://nope", "-o", tmp_path / "c.yaml")

    assert result.exit_code == 2
    assert "unsupported endpoint scheme ftp://" in result.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_console_script_runs_a_task(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    done = subprocess.run(
        [flyte_script(), "run", "--local", str(program), "greet", "--name", "Sub"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ},
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "output: " + json.dumps("Hello, Sub! Hello, Sub!") in done.stdout.splitlines()
    assert " succeeded in " in done.stderr


def test_console_script_usage_error_has_no_traceback(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)

    done = subprocess.run(
        [flyte_script(), "run", str(program), "greet", "--times", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ},
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: invalid value 'x' for --times (int): Input should be a valid integer, unable to parse string as an "
        f"integer; usage: {GREET_SIGNATURE}"
    ]


def test_ctrl_c_aborts_the_run_and_exits_130(tmp_path: Path, isolated_home: Path) -> None:
    program = write_program(tmp_path, HANGING)
    marker = tmp_path / "started"
    with (
        ctrl_c_reaches_children(),
        subprocess.Popen(
            [flyte_script(), "run", "--local", "--name", "to-interrupt", str(program), "main"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "CLI_TEST_MARKER": str(marker)},
        ) as process,
    ):
        try:
            assert_eventually(marker.exists, timeout=30)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert process.returncode == 130, stderr
    assert "phase: aborted" in stdout.splitlines()
    assert "Error: run to-interrupt aborted: ActionAbortedError: interrupted" in stderr
    summary = json.loads((isolated_home / "local" / "runs" / "to-interrupt" / "run.json").read_text())
    assert summary["phase"] == "aborted"


def test_a_gateway_refuses_to_start_on_a_bad_policy_file(tmp_path: Path, isolated_home: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: v1\nweights:\n  least_loaded: 1\n  cost: lots\n")
    result = CliRunner().invoke(main, ["gateway", "serve", "--store", "memory", "--port", "0", "--policy", str(policy)])
    assert result.exit_code == 2
    assert "policy.yaml line 4: field weights.cost" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        (["--retain-runs", "3 years"], "retention is a positive number with a unit"),
        (["--retain-project", "scratch"], "--retain-project takes NAME=DURATION"),
        (["--blob-grace", "soon"], "not 'soon'"),
    ],
)
def test_a_gateway_refuses_to_start_on_a_bad_retention(option: list[str], complaint: str) -> None:
    result = CliRunner().invoke(main, ["gateway", "serve", "--store", "memory", "--port", "0", *option])
    assert result.exit_code == 2
    assert complaint in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["policy", "simulate", "--policy", "{policy}", "--since", "soon"], "--since 'soon'"),
        (["run", "--max-wait", "soon", "{policy}", "main"], "--max-wait 'soon'"),
        (["run", "--max-wait", "0s", "{policy}", "main"], "a number above 0"),
        (["cluster", "cordon", "east", "--reason", ""], "--reason"),
        (["get", "placement", "somerun"], "placement needs a gateway"),
    ],
)
def test_placement_commands_explain_bad_use(
    tmp_path: Path, isolated_home: Path, args: list[str], complaint: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: v1\n")
    result = CliRunner().invoke(main, [a.replace("{policy}", str(policy)) for a in args])
    assert result.exit_code != 0
    assert complaint in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        ("--default-cpu", "0", "--default-cpu/--default-memory: '0' must be > 0"),
        ("--default-memory", "0", "--default-memory: '0' must be > 0"),
        ("--default-memory", "lots", "'lots'"),
        ("--max-processes", "0", "--max-processes"),
        ("--max-starting", "-1", "--max-starting"),
        ("--blobs-endpoint", "http://127.0.0.1:9000", "--blobs-endpoint is for the cluster's object store"),
        ("--blobs", "/var/blobs", "--blobs /var/blobs: a cluster's store is an object store"),
    ],
)
def test_agent_serve_refuses_bad_admission_flags(isolated_home: Path, flag: str, value: str, complaint: str) -> None:
    args = ["agent", "serve", "--gateway", "http://127.0.0.1:9", "--token", "t", "--cluster", "c", flag, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert complaint in result.output
    assert "Traceback" not in result.output


def test_get_runs_lists_the_valid_phases_and_takes_any_case(tmp_path: Path) -> None:
    program = write_program(tmp_path, GREET)
    assert invoke("run", "--local", "--name", "cased", program, "greet", "--name", "C").exit_code == 0

    bogus = invoke("get", "runs", "--phase", "bogus")
    upper = invoke("get", "runs", "--phase", "SUCCEEDED")

    assert bogus.exit_code == 2
    assert "'bogus' is not one of 'queued', 'placed', 'running', 'succeeded', 'failed', 'aborted'" in bogus.stderr
    assert upper.exit_code == 0, upper.output
    assert "cased" in upper.stdout


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-1.0, "0.0 ms"),
        (0.00042, "0.4 ms"),
        (0.020061969757080078, "20 ms"),
        (0.9996, "1.0 s"),
        (1.234, "1.2 s"),
        (59.97, "1 m 0 s"),
        (184.4, "3 m 4 s"),
        (7512.0, "2 h 5 m"),
    ],
)
def test_durations_are_rounded_for_reading(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
