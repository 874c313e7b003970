"""A gateway as a real process for tests: `flyte gateway serve` on a free port, stopped by the test's fixture."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_LISTENING = re.compile(r"flyte gateway listening on (http://\S+)")


@dataclass
class GatewayProcess:
    store_url: str
    home: Path
    """HOME and FLYTE_HOME of the gateway: its blobs and the config with its admin token live here."""
    port: int = 0
    endpoint: str = ""
    token: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    """More `flyte gateway serve` options."""

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(self.home), "FLYTE_HOME": str(self.home / "flyte")}
        command = [
            sys.executable,
            "-m",
            "flyte.cli",
            "gateway",
            "serve",
            "--store",
            self.store_url,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        # Output goes to a file, not a pipe: nobody reads a pipe after start-up, and a full one would block the gateway.
        self.log = self.home / f"gateway-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = _LISTENING.search(self.log.read_text())
            if match:
                self.endpoint = match.group(1)
                self.port = int(self.endpoint.rsplit(":", 1)[1])
                config = yaml.safe_load((self.home / ".flyte" / "config.yaml").read_text())
                self.token = config["admin"]["api_key"]
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("the gateway did not start:\n" + self.log.read_text())

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
