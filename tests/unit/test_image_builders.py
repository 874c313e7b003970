"""Flyte 2's image builders make specs with deterministic identifiers, and `flyte build FILE ENV` writes the
Dockerfile and build context for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import flyte
from flyte._image import CodeBundle, Commands, DockerfileBuild, PythonWheels, UVProject
from flyte.cli._main import main

SCRIPT = """\
# /// script
# requires-python = ">=3.12"
# dependencies = [
#   "httpx>=0.27",
#   "rich",
# ]
# ///
print("hello")
"""


def test_identifiers_of_specs_made_before_the_new_fields_are_unchanged() -> None:
    image = flyte.Image.from_debian_base(python_version=(3, 11)).with_pip_packages("numpy")
    assert set(image.to_dict()) == {"uri", "base_uri", "python_version", "name", "layers"}
    assert image.identifier == flyte.Image(python_version=(3, 11)).with_pip_packages("numpy").identifier


def test_from_debian_base_takes_flyte2_options() -> None:
    bare = flyte.Image.from_debian_base(python_version=(3, 12), install_flyte=False, registry="ghcr.io/me", name="app")
    assert bare.name == "ghcr.io/me/app"
    assert bare.to_dict()["install_flyte"] is False
    assert bare.identifier != flyte.Image.from_debian_base(python_version=(3, 12), name="ghcr.io/me/app").identifier


def test_from_uv_script_reads_the_script_block(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    image = flyte.Image.from_uv_script(script, name="job")
    assert image.python_version == (3, 12)
    assert image.layers[0].to_dict()["packages"] == ["httpx>=0.27", "rich"]
    assert image.identifier == flyte.Image.from_uv_script(script, name="job").identifier
    plain = tmp_path / "plain.py"
    plain.write_text("print(1)\n")
    assert flyte.Image.from_uv_script(plain, python_version=(3, 11)).layers == ()


def test_from_dockerfile_identifier_follows_the_file_content(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.12-slim\n")
    first = flyte.Image.from_dockerfile(dockerfile, registry="reg.example.com", name="custom")
    assert isinstance(first.layers[0], DockerfileBuild)
    assert (
        first.identifier
        == flyte.Image.from_dockerfile(dockerfile, registry="reg.example.com", name="custom").identifier
    )
    dockerfile.write_text("FROM python:3.12-slim\nRUN true\n")
    assert (
        flyte.Image.from_dockerfile(dockerfile, registry="reg.example.com", name="custom").identifier
        != first.identifier
    )
    with pytest.raises(ValueError, match="takes no other layers"):
        first.with_pip_packages("numpy")


def test_from_ref_name_is_a_reference_with_nothing_to_add() -> None:
    image = flyte.Image.from_ref_name("gpu-base")
    assert image.to_dict()["ref_name"] == "gpu-base"
    assert image.identifier != flyte.Image.from_ref_name("cpu-base").identifier
    with pytest.raises(ValueError, match="reference by name"):
        image.with_apt_packages("git")


def test_clone_code_bundle_uv_project_commands_and_wheels() -> None:
    base = flyte.Image.from_debian_base(python_version=(3, 12), name="team/app")
    wheels = PythonWheels("dist", package_name="mylib")
    cloned = base.clone(registry="ghcr.io/me", name="app2", addl_layer=wheels)
    assert cloned.name == "ghcr.io/me/app2"
    assert cloned.layers == (wheels,)
    assert base.layers == ()
    on_other_base = base.clone(base_image="nvidia/cuda:12.4.0-runtime-ubuntu22.04")
    assert (on_other_base.base_uri, on_other_base.python_version) == ("nvidia/cuda:12.4.0-runtime-ubuntu22.04", None)
    full = (
        base.with_code_bundle()
        .with_uv_project("pyproject.toml", uvlock="uv.lock")
        .with_commands(["echo one", "echo two"])
        .with_python_wheels("dist")
    )
    assert [type(layer) for layer in full.layers] == [CodeBundle, UVProject, Commands, PythonWheels]
    assert base.with_commands(["a", "b"]) == base.with_commands("a", "b")
    assert (
        full.identifier
        == (
            base.with_code_bundle()
            .with_uv_project("pyproject.toml", uvlock="uv.lock")
            .with_commands("echo one", "echo two")
            .with_python_wheels("dist")
        ).identifier
    )
    with pytest.raises(ValueError, match="copy_style"):
        base.with_code_bundle(copy_style="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="project_install_mode"):
        base.with_uv_project("pyproject.toml", project_install_mode="sometimes")  # type: ignore[arg-type]


PROGRAM = """\
import flyte

image = (
    flyte.Image.from_debian_base(python_version=(3, 12), name="team/built")
    .with_apt_packages("git")
    .with_env_vars({"GREETING": "hello \\"world\\""})
    .with_requirements("requirements.txt")
    .with_uv_project("proj/pyproject.toml", uvlock="proj/uv.lock")
    .with_python_wheels("wheels", package_name="mylib")
    .with_source_folder("assets", "/opt/assets")
    .with_commands(["echo built"])
    .with_code_bundle()
)
env = flyte.TaskEnvironment("build_env", image=image)


@env.task
async def hello() -> str:
    return "hi"
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "requirements.txt").write_text("numpy\n")
    (root / "proj").mkdir()
    (root / "proj" / "pyproject.toml").write_text('[project]\nname = "proj"\nversion = "0"\n')
    (root / "proj" / "uv.lock").write_text("version = 1\n")
    (root / "wheels").mkdir()
    (root / "wheels" / "mylib-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (root / "assets").mkdir()
    (root / "assets" / "data.txt").write_text("data")
    program = root / "build_program.py"
    program.write_text(PROGRAM)
    return program


def test_flyte_build_writes_the_dockerfile_and_context(tmp_path: Path) -> None:
    program = _project(tmp_path / "src")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "-o", str(out), str(program), "build_env"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"context    {out}" in result.output
    dockerfile = (out / "Dockerfile").read_text()
    lines = dockerfile.splitlines()
    assert lines[1:3] == ["FROM python:3.12-slim-bookworm", "WORKDIR /root"]
    assert "apt-get install -y --no-install-recommends git" in dockerfile
    assert 'ENV GREETING="hello \\"world\\""' in lines
    assert "RUN pip install --no-cache-dir -r /tmp/flyte-layers/2/requirements.txt" in lines
    assert "uv export --frozen --no-hashes --no-emit-project" in dockerfile
    assert "RUN pip install --no-cache-dir --find-links /tmp/flyte-layers/4 mylib" in lines
    assert "COPY layers/5/ /opt/assets" in lines
    assert "RUN echo built" in lines
    assert "COPY layers/7/ ." in lines
    assert lines[-1].startswith("RUN pip install --no-cache-dir flyte-federation==")
    assert (out / "layers" / "2" / "requirements.txt").read_text() == "numpy\n"
    assert (out / "layers" / "3" / "uv.lock").exists()
    assert (out / "layers" / "4" / "mylib-1.0-py3-none-any.whl").exists()
    assert (out / "layers" / "5" / "data.txt").read_text() == "data"
    assert (out / "layers" / "7" / "build_program.py").read_text() == PROGRAM
    # The same spec and files give the same context; a non-empty target is refused rather than mixed.
    again = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "again"), str(program), "build_env"])
    assert (tmp_path / "again" / "Dockerfile").read_text() == dockerfile
    refused = CliRunner().invoke(main, ["build", "-o", str(out), str(program), "build_env"])
    assert refused.exit_code == 1
    assert "is not empty" in refused.output
    assert again.exit_code == 0


def test_flyte_build_names_what_is_wrong(tmp_path: Path) -> None:
    program = _project(tmp_path / "src")
    (tmp_path / "src" / "requirements.txt").unlink()
    missing = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "o1"), str(program), "build_env"])
    assert missing.exit_code == 1
    assert "requirements file 'requirements.txt' does not exist" in missing.output
    unknown = CliRunner().invoke(main, ["build", str(program), "nope"])
    assert unknown.exit_code == 2
    assert "its environments are: build_env" in unknown.output


def test_build_api_writes_the_context_and_needs_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No docker on PATH: the context is still written, and the error says where it is.
    monkeypatch.setenv("PATH", str(tmp_path))
    image = flyte.Image.from_debian_base(python_version=(3, 12)).with_pip_packages("rich")
    with pytest.raises(flyte.errors.ImageBuildError, match="docker is not on PATH") as caught:
        flyte.build(image)
    context = Path(caught.value.message.rpartition("ready in ")[2])
    assert context.name == f"image-{image.identifier}"
    assert "RUN pip install --no-cache-dir rich" in (context / "Dockerfile").read_text()
    ready = flyte.TaskEnvironment("ready_env", image="python:3.12-slim")
    assert flyte.build_images(ready) == {}
    with pytest.raises(flyte.errors.ImageBuildError, match="build it with build_images"):
        flyte.build(image.with_code_bundle())
