"""A throwaway single-member etcd server on 127.0.0.1, for tests, benchmarks and fault drills (never production;
the benches import it from here too).

It picks free client and peer ports, keeps its data in a directory the caller owns, and waits on etcd's /health
endpoint with a deadline before returning. `stop()` terminates it; `kill()` is the SIGKILL a fault test needs;
`start()` again brings it back on the same ports and data.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EtcdProcess:
    """One etcd server. Short heartbeat and election timeouts so it elects itself at once and allows 1 s leases."""

    host = "127.0.0.1"

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        name: str = "test",
        ports: tuple[int, int] | None = None,
    ):
        found = binary or shutil.which("etcd")
        if found is None:
            raise FileNotFoundError("no `etcd` on PATH (Debian: apt-get install etcd-server)")
        self.binary = found
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        """More etcd flags, e.g. `--quota-backend-bytes=...` for a drill that fills the store."""
        self.name = name
        self.port, self.peer_port = ports or (_free_port(), _free_port())
        self.initial_cluster = f"{name}=http://{self.host}:{self.peer_port}"
        """Every member's peer URL (`EtcdCluster` sets it to the whole cluster's)."""
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"etcd://{self.host}:{self.port}"

    def start(self, *, within: float = 15.0) -> EtcdProcess:
        self.launch()
        self._wait_healthy(within)
        return self

    def launch(self) -> None:
        """Start the process without waiting: the members of a cluster are healthy only once a quorum runs."""
        client, peer = f"http://{self.host}:{self.port}", f"http://{self.host}:{self.peer_port}"
        args = [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.initial_cluster}",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--logger=zap",
            "--log-level=warn",
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_healthy(self, within: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + within
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self._proc.returncode}; log: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
                    last = "unhealthy"
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"etcd on port {self.port} not healthy within {within}s ({last}); log: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing, as a hung or partitioned member does."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)


class EtcdCluster:
    """Three (or `size`) etcd members on loopback ports forming one cluster, as production runs it: a quorum
    survives one member's loss. `url` names every member, so a client balances over them and skips a dead one."""

    def __init__(self, root: Path, size: int = 3):
        root.mkdir(parents=True, exist_ok=True)
        self.members = [
            EtcdProcess(root / f"member-{i}", name=f"member-{i}", ports=(_free_port(), _free_port()))
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}=http://{m.host}:{m.peer_port}" for m in self.members)
        for member in self.members:
            member.initial_cluster = initial

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"{m.host}:{m.port}" for m in self.members)

    def start(self, *, within: float = 30.0) -> EtcdCluster:
        for member in self.members:
            member.launch()
        for member in self.members:
            member._wait_healthy(within)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()
