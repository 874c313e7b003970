"""The process backend against real processes: exit codes, output, timeouts, kills, and cgroup v1 limits.

Tests that need cgroups skip with the reason when the machine has no writable cgroup v1 memory hierarchy, except
under CI (the CI variable set), where that is a broken machine setup and fails instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prerequisites import CGROUPS_INSTALL, require
from processes import pid_alive
from waiting import async_assert_eventually

from agent.backends import Exit, ExitKind, LaunchSpec, ProcessBackend, ProcessHandle, _cgroups
from agent.backends._cgroups import Cgroups

MiB = 2**20


def require_cgroups() -> None:
    available = _cgroups.shared().available()
    require(None if available else "no writable cgroup v1 memory hierarchy on this machine", CGROUPS_INSTALL)


class Output:
    def __init__(self) -> None:
        self.streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def __call__(self, stream: str, data: bytes) -> None:
        self.streams[stream].extend(data)

    def text(self, stream: str = "stdout") -> str:
        return self.streams[stream].decode()


def spec(key: str, code: str, **kw: object) -> LaunchSpec:
    return LaunchSpec(
        key=key,
        command=[sys.executable, "-c", textwrap.dedent(code)],
        env=dict(os.environ),
        cwd=Path.cwd(),
        **kw,  # type: ignore[arg-type]
    )


SLEEPER = """
    import time
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture(params=["cgroups", "no-cgroups"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[ProcessBackend]:
    if request.param == "cgroups":
        require_cgroups()
    backend = ProcessBackend(kill_grace_seconds=0.5, use_cgroups=request.param == "cgroups")
    yield backend
    await backend.close()
    assert backend.running() == []


@pytest.fixture
async def limited() -> AsyncIterator[ProcessBackend]:
    require_cgroups()
    backend = ProcessBackend(kill_grace_seconds=0.5)
    yield backend
    await backend.close()


async def started(backend: ProcessBackend, launch_spec: LaunchSpec, output: Output) -> ProcessHandle:
    handle = await backend.launch(launch_spec, output)
    await async_assert_eventually(lambda: "ready" in output.text())
    return handle


async def test_exit_codes(backend: ProcessBackend) -> None:
    ok = await backend.launch(spec("r/ok/0", "pass"), Output())
    failed = await backend.launch(spec("r/failed/0", "import sys; sys.exit(3)"), Output())
    assert await ok.wait() == Exit(ExitKind.EXITED, 0)
    assert await failed.wait() == Exit(ExitKind.EXITED, 3)
    assert await failed.wait() == Exit(ExitKind.EXITED, 3), "wait answers again"


async def test_output_forwarded_in_order_per_stream(backend: ProcessBackend) -> None:
    output = Output()
    code = """
        import sys
        for i in range(2000):
            print(i, flush=True)
            print(-i, file=sys.stderr, flush=True)
        sys.stdout.buffer.write(b"z" * (1 << 20))
    """
    handle = await backend.launch(spec("r/out/0", code), output)
    assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    lines = "".join(f"{i}\n" for i in range(2000))
    assert output.text("stdout") == lines + "z" * (1 << 20)
    assert output.text("stderr") == "".join(f"{-i}\n" for i in range(2000))


async def test_timeout_kills_the_whole_process_group(backend: ProcessBackend) -> None:
    output = Output()
    code = """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(grandchild.pid, flush=True)
        time.sleep(60)
    """
    handle = await backend.launch(spec("r/slow/0", code, timeout_seconds=1.0), output)
    exit = await handle.wait()
    assert exit.kind is ExitKind.TIMEOUT
    assert exit.code == -signal.SIGTERM
    assert "timeout of 1s" in exit.detail
    assert output.text(), "the timeout fired before the grandchild was started"
    grandchild = int(output.text().split()[0])
    await async_assert_eventually(lambda: not pid_alive(grandchild), within=5)


async def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(backend: ProcessBackend) -> None:
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    output = Output()
    handle = await backend.launch(spec("r/stubborn/0", code, timeout_seconds=0.3), output)
    exit = await handle.wait()
    assert "ready" in output.text(), "the timeout fired before the program ignored SIGTERM"
    assert (exit.kind, exit.code) == (ExitKind.TIMEOUT, -signal.SIGKILL)


async def test_kill_on_request_is_idempotent(backend: ProcessBackend) -> None:
    handle = await started(backend, spec("r/abort/0", SLEEPER), Output())
    await handle.kill("aborted by the user")
    await handle.kill("again")
    exit = await handle.wait()
    assert (exit.kind, exit.detail) == (ExitKind.KILLED, "aborted by the user")
    assert handle.pid is not None
    assert not pid_alive(handle.pid)


async def test_outside_signal_is_reported_as_killed(backend: ProcessBackend) -> None:
    handle = await started(backend, spec("r/shot/0", SLEEPER), Output())
    assert handle.pid is not None
    os.kill(handle.pid, signal.SIGKILL)
    assert await handle.wait() == Exit(ExitKind.KILLED, -signal.SIGKILL, "killed by SIGKILL")


async def test_duplicate_key_is_refused_while_running(backend: ProcessBackend) -> None:
    first = await started(backend, spec("r/dup/0", SLEEPER), Output())
    with pytest.raises(ValueError, match="already running"):
        await backend.launch(spec("r/dup/0", "pass"), Output())
    assert backend.running() == ["r/dup/0"]
    await first.kill("test")
    again = await backend.launch(spec("r/dup/0", "pass"), Output())
    assert await again.wait() == Exit(ExitKind.EXITED, 0)


async def test_missing_executable_raises_and_frees_the_key(backend: ProcessBackend, tmp_path: Path) -> None:
    missing = LaunchSpec(key="r/missing/0", command=["no-such-program-here"], env={"PATH": str(tmp_path)}, cwd=tmp_path)
    with pytest.raises(FileNotFoundError):
        await backend.launch(missing, Output())
    assert backend.running() == []


async def test_failing_sink_does_not_block_the_child(backend: ProcessBackend, caplog: pytest.LogCaptureFixture) -> None:
    def sink(stream: str, data: bytes) -> None:
        raise RuntimeError("sink is broken")

    code = "import sys; sys.stdout.buffer.write(b'x' * (4 << 20))"
    with caplog.at_level(logging.ERROR, logger="flyte.agent.process"):
        handle = await backend.launch(spec("r/sink/0", code), sink)
        assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    assert len([r for r in caplog.records if "output sink" in r.message]) == 1


async def test_close_kills_everything(backend: ProcessBackend) -> None:
    handles = [await started(backend, spec(f"r/close/{i}", SLEEPER), Output()) for i in range(2)]
    await backend.close()
    assert [(await h.wait()).kind for h in handles] == [ExitKind.KILLED, ExitKind.KILLED]
    assert backend.running() == []
    with pytest.raises(RuntimeError, match="closed"):
        await backend.launch(spec("r/late/0", "pass"), Output())


def in_group(pid: int, directory: str) -> bool:
    """Whether pid is a member of the cgroup directory, as the kernel lists it."""
    return str(pid) in Path(directory, "cgroup.procs").read_text().split()


def control(directory: str, name: str) -> str | None:
    """A cgroup control file's value, or None when the group has no such file."""
    path = Path(directory, name)
    return path.read_text().strip() if path.exists() else None


def gone(dirs: list[str]) -> bool:
    return not any(Path(d).exists() for d in dirs)


def gated(tmp_path: Path, body: str) -> tuple[str, Path]:
    """A program that runs body, prints ready, then waits for the test to create the go file (with a deadline)."""
    go = tmp_path / "go"
    code = f"""
        import os, time
        {body}
        print("ready", flush=True)
        deadline = time.monotonic() + 20
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.005)
    """
    return code, go


async def test_memory_limit_kills_and_reports_oom(limited: ProcessBackend) -> None:
    code = "data = b'x' * (200 << 20); print('survived', flush=True)"
    output = Output()
    handle = await limited.launch(spec("r/hungry/0", code, memory_limit_bytes=64 * MiB), output)
    dirs = handle.cgroup_dirs
    assert dirs
    exit = await handle.wait()
    assert exit.kind is ExitKind.OOM, (exit, output.text("stderr"))
    assert exit.code == -signal.SIGKILL
    assert "memory limit of 64 MiB" in exit.detail
    assert "survived" not in output.text()
    assert gone(dirs), "the attempt's cgroups are removed"


async def test_within_limit_runs_in_its_group_and_exits_normally(limited: ProcessBackend, tmp_path: Path) -> None:
    code, go = gated(tmp_path, "data = b'x' * (16 << 20)")
    handle = await started(limited, spec("r/modest/0", code, memory_limit_bytes=64 * MiB), Output())
    (memory,) = (d for d in handle.cgroup_dirs if control(d, "memory.limit_in_bytes") is not None)
    assert handle.pid is not None
    assert in_group(handle.pid, memory)
    assert control(memory, "memory.limit_in_bytes") == str(64 * MiB)
    assert control(memory, "memory.memsw.limit_in_bytes") in (None, str(64 * MiB)), "swap must not hide an OOM"
    go.touch()
    assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    assert gone([memory])


async def test_cpu_limit_sets_a_quota(limited: ProcessBackend, tmp_path: Path) -> None:
    code, go = gated(tmp_path, "pass")
    handle = await started(limited, spec("r/cpu/0", code, cpu_limit=0.5), Output())
    dirs = handle.cgroup_dirs
    cpu = [d for d in dirs if control(d, "cpu.cfs_quota_us") is not None]
    if cpu:  # the cpu controller is optional: a machine without it runs the attempt without a quota
        assert control(cpu[0], "cpu.cfs_quota_us") == "50000"
        assert control(cpu[0], "cpu.cfs_period_us") == "100000"
        assert handle.pid is not None
        assert in_group(handle.pid, cpu[0])
    go.touch()
    assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    assert gone(dirs)


async def test_descendants_that_left_the_process_group_are_killed(limited: ProcessBackend) -> None:
    output = Output()
    code = """
        import subprocess, sys
        escapee = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        print(escapee.pid, flush=True)
    """
    handle = await limited.launch(spec("r/escape/0", code), output)
    assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    escapee = int(output.text().split()[0])
    await async_assert_eventually(lambda: not pid_alive(escapee), within=5)


async def test_without_cgroups_limits_are_skipped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_cgroups, "_own_dirs", lambda: {"cpu": Path("/nonexistent")})
    backend = ProcessBackend(cgroups=Cgroups(prefix="flyte-agent-test"))
    with caplog.at_level(logging.WARNING, logger="flyte.agent.cgroups"):
        for i in range(2):
            handle = await backend.launch(spec(f"r/free/{i}", "pass", memory_limit_bytes=64 * MiB), Output())
            assert handle.cgroup_dirs == []
            assert await handle.wait() == Exit(ExitKind.EXITED, 0)
    await backend.close()
    warnings = [r for r in caplog.records if "not enforced" in r.message]
    assert len(warnings) == 1
    assert "cgroup v2 only" in warnings[0].getMessage()
