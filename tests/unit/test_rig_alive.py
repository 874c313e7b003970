"""`flyte rig down` waits for the rig's processes with `_alive`: a process that has exited counts as stopped even
before its parent reaps it, since the rig's processes outlive `rig up` and init may reap them only later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from waiting import assert_eventually

from flyte.cli._rig import _alive


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are read from /proc")
def test_a_zombie_of_another_parent_is_not_alive_and_its_running_parent_is() -> None:
    # `sleep 0` exits at once; its parent execs into `sleep 30`, which never reaps it: a zombie that is not ours.
    with subprocess.Popen(
        ["sh", "-c", "sleep 0 & echo $!; exec sleep 30"], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            zombie = int(parent.stdout.readline())
            assert_eventually(lambda: _state(zombie) == "Z", timeout=10)
            assert not _alive(zombie)
            assert _alive(parent.pid)
        finally:
            parent.kill()
    assert not _alive(parent.pid)
