"""Our servers as real processes for tests and benches: one way to start a long-running process with its output in a
file (`Proc`), one way to spell `flyte gateway serve` (`gateway_command`), and a gateway on a free port
(`GatewayProcess`). The fault matrix's `Federation` and every integration fixture start gateways through these."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LISTENING = re.compile(r"flyte gateway listening on (http://\S+)")
"""The line a gateway prints once it serves; group 1 is its endpoint."""
AGENT_CONNECTED = re.compile(r"connected to \S+ as \S+, epoch (\d+)")
"""The line an agent logs once its session with a gateway is open; group 1 is the session's epoch."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs: a zombie does not, and a process reaped at any moment of the look does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Processes started inside take Ctrl-C as a terminal would give it, for tests that send one. A test run
    started in the background of a shell ignores SIGINT, and an ignored signal is inherited across exec (a handler
    is not): with a handler here while they start, they begin with the default."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Proc:
    """One long-running process with its output in a file (a pipe nobody reads would fill and block it), in a session
    of its own so teardown can signal it and everything it started."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str]):
        self.name = name
        self.command = command
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready: re.Pattern[str], within: float = 30.0) -> re.Match[str]:
        """Start the process and wait until its output (from now on) matches `ready`."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.wait_for(ready, within, offset)

    def text(self, offset: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def size(self) -> int:
        return self.log.stat().st_size

    def wait_for(self, pattern: re.Pattern[str], within: float, offset: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            match = pattern.search(self.text(offset))
            if match:
                return match
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: no {pattern.pattern!r} within {within}s; log tail:\n{self.text()[-3000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.alive():
            self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        stop_all([self])

    def _terminate(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            os.killpg(self.process.pid, signal.SIGTERM)

    def _reap(self, within: float) -> None:
        """Wait for the terminated process; SIGKILL its group if it has not exited within `within` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def stop_all(procs: Iterable[Proc], within: float = 10.0) -> None:
    """SIGTERM every process, then wait for each (SIGKILL past `within` seconds): their shutdowns overlap instead of
    running one after another."""
    procs = list(procs)
    for proc in procs:
        proc._terminate()
    deadline = time.monotonic() + within
    for proc in procs:
        proc._reap(max(0.0, deadline - time.monotonic()))


def gateway_command(store_url: str, *, port: int = 0, extra_args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`flyte gateway serve` on `store_url`, run by this interpreter."""
    return [
        sys.executable, "-m", "flyte.cli", "gateway", "serve", "--store", store_url, "--port", str(port), *extra_args,
    ]  # fmt: skip


@dataclass
class GatewayProcess:
    """A gateway on a free port whose admin token is read from the config it writes under `home`."""

    store_url: str
    home: Path
    """HOME and FLYTE_HOME of the gateway: its blobs and the config with its admin token live here."""
    port: int = 0
    endpoint: str = ""
    token: str = ""
    log: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    """More `flyte gateway serve` options."""
    proc: Proc | None = field(default=None, repr=False)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.proc is None else self.proc.process

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(self.home), "FLYTE_HOME": str(self.home / "flyte")}
        self.log = self.home / f"gateway-{time.monotonic_ns()}.log"
        self.proc = Proc(
            "gateway", gateway_command(self.store_url, port=self.port, extra_args=self.extra_args), self.log, env
        )
        try:
            self.endpoint = self.proc.start(LISTENING, within=timeout).group(1)
        except AssertionError as error:
            self.stop()
            raise RuntimeError(f"the gateway did not start: {error}") from None
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        config = yaml.safe_load((self.home / ".flyte" / "config.yaml").read_text())
        self.token = config["admin"]["api_key"]
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def refused_endpoint() -> str:
    """An address nothing listens on (a replica that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
