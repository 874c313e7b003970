"""The agent's virtualenvs for image specs, built by the real installer: one build for concurrent requests of one
spec, a venv in which the worker runtime imports, and a failed build that names the package and leaves nothing."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agent._images import ImageBuildError, Venvs, pip_layers

pytestmark = pytest.mark.timeout(300)

# "pip" is in every new venv: installing it needs no index, so this test needs no network.
LAYERS = [{"kind": "pip_packages", "packages": ["pip"], "index_url": None, "extra_index_urls": [], "pre": False}]


async def test_concurrent_requests_of_one_spec_share_one_build(tmp_path: Path) -> None:
    venvs = Venvs(tmp_path / "venvs")
    pythons = await asyncio.gather(*(venvs.python_for(LAYERS) for _ in range(3)))
    assert len(set(pythons)) == 1
    assert [p.name for p in (tmp_path / "venvs").iterdir()] == [venvs.digest(LAYERS)]
    command = [pythons[0], "-c", "import flyte._runtime, sys; print(sys.prefix)"]
    ran = await asyncio.to_thread(subprocess.run, command, capture_output=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().strip() == str(tmp_path / "venvs" / venvs.digest(LAYERS))
    assert await venvs.python_for(LAYERS) == pythons[0]


async def test_a_package_that_cannot_be_installed_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    venvs = Venvs(tmp_path / "venvs")
    broken = [{"kind": "pip_packages", "packages": ["./no-such-project"]}]
    with pytest.raises(ImageBuildError, match=r"no-such-project") as raised:
        await venvs.python_for(broken)
    assert raised.value.code == "ImageBuildFailed"
    assert list((tmp_path / "venvs").iterdir()) == []


def test_packages_the_platform_provides_are_never_installed_into_an_image_venv() -> None:
    # The brief's reuse.py asks for unionai-reuse, which brings PyPI's flyte: that would hide our SDK in the venv.
    spec = {
        "layers": [
            {"kind": "pip_packages", "packages": ["unionai-reuse>=0.1.10", "Flyte==2.1", "six"]},
            {"kind": "pip_packages", "packages": ["unionai_reuse"]},
            {"kind": "env_vars", "variables": [["A", "1"]]},
        ]
    }
    assert pip_layers(spec) == [{"kind": "pip_packages", "packages": ["six"]}]
