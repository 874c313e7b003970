"""A large `File` moved between two clusters through the object store, against a bare obstore copy of the same
bytes on the same S3 server.

    python bench/s3_file_throughput.py [--mib 1024]

Starts its own rig on a local S3 server (`flyte rig up --s3 --clusters us-east,eu-west`, in a temporary
FLYTE_HOME), runs a program whose task on us-east writes `--mib` MiB of random bytes and returns them as a `File`
(timing `File.from_local`: hash, presigned PUTs the store checks, and the server-side copy), and whose task on
eu-west reads it (timing the presigned GET to disk). Then it copies the same number of bytes with bare obstore
(`put` of a file, `get` to memory) on the same server. Prints MiB/s for each and their ratio, the gateway's peak
resident memory and the blob bytes through it (its blob API's, and any read back to check a digest). Timing
only; never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import os
    import tempfile
    import time
    from pathlib import Path

    import flyte
    from flyte.io import File

    east = flyte.TaskEnvironment("bench_east", placement=flyte.Placement(clusters=["us-east"]))
    west = flyte.TaskEnvironment("bench_west", placement=flyte.Placement(clusters=["eu-west"]))
    east.add_dependency(west)


    @east.task
    async def produce(mib: int) -> tuple[File, float]:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "big.bin"
            with path.open("wb") as out:
                for _ in range(mib):
                    out.write(os.urandom(1024 * 1024))
            started = time.perf_counter()
            f = await File.from_local(path)
            return f, time.perf_counter() - started


    @west.task
    async def consume(f: File) -> float:
        started = time.perf_counter()
        local = f.download_sync()
        elapsed = time.perf_counter() - started
        assert os.path.getsize(local) > 0
        return elapsed


    @east.task
    async def main(mib: int) -> tuple[float, float]:
        f, up = await produce(mib)
        down = await consume(f)
        return up, down
""")


def flyte_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def blob_bytes(endpoint: str) -> dict[str, int]:
    """The gateway's blob-bytes counter by direction: received and sent by its blob API, checked (read back)."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^flyte_gateway_blob_bytes_total\{direction="(\w+)"\} (\d+)$', text, re.MULTILINE)
    return {direction: int(count) for direction, count in found}


def bare_copy(s3_port: int, keys: dict[str, str], mib: int, scratch: Path) -> tuple[float, float]:
    import obstore
    from obstore.store import S3Store

    from flyte.cli._s3_local import LocalS3

    s3 = LocalS3(s3_port, keys["access_key"], keys["secret_key"])
    store = S3Store(s3.bucket, config=s3.config(), client_options={"allow_http": True})
    path = scratch / "bare.bin"
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1024 * 1024))
    started = time.perf_counter()
    obstore.put(store, "bench/bare.bin", path)
    up = time.perf_counter() - started
    started = time.perf_counter()
    data = obstore.get(store, "bench/bare.bin").bytes()
    down = time.perf_counter() - started
    assert len(data) == mib * 1024 * 1024
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flyte-s3-bench-"))
    (root / "home").mkdir()
    (root / ".flyteignore").write_text("flyte-home/\nhome/\n")
    (root / "bench_program.py").write_text(PROGRAM)
    env = {
        **os.environ,
        "FLYTE_HOME": str(root / "flyte-home"),
        "HOME": str(root / "home"),
        "FLYTE_MAX_BLOB_BYTES": str((args.mib + 64) * 1024 * 1024),
    }
    up = flyte_cli(root, env, "rig", "up", "--s3", "--clusters", "us-east,eu-west", "--memory", "8Gi")
    if up.returncode != 0:
        sys.exit(up.stderr + up.stdout)
    try:
        directory = root / "flyte-home" / "rig"
        state = json.loads((directory / "rig.json").read_text())
        port = re.search(r"local S3 server http://127\.0\.0\.1:(\d+)", up.stdout)
        assert port is not None, up.stdout
        before = blob_bytes(state["endpoint"])
        runner = textwrap.dedent(f"""
            import json, flyte, bench_program
            flyte.init_from_config()
            run = flyte.run(bench_program.main, mib={args.mib})
            print(json.dumps(list(run.outputs())))
        """)
        result = subprocess.run(
            [sys.executable, "-c", runner], cwd=root, env=env, capture_output=True, text=True, timeout=1800
        )
        if result.returncode != 0:
            sys.exit(result.stderr)
        flyte_up, flyte_down = json.loads(result.stdout.strip().splitlines()[-1])
        through = {k: v - before.get(k, 0) for k, v in blob_bytes(state["endpoint"]).items()}
        gateway_peak = peak_rss(state["pids"]["gateway"])
        bare_up, bare_down = bare_copy(
            int(port.group(1)), json.loads((directory / "s3.json").read_text()), args.mib, root
        )
    finally:
        flyte_cli(root, env, "rig", "down")
        shutil.rmtree(root, ignore_errors=True)  # the S3 server's data: the file, twice

    def rate(seconds: float) -> float:
        return args.mib / seconds

    print(f"{args.mib} MiB File, us-east -> eu-west through a local S3 server (SeaweedFS), 2 shared cores")
    print(
        f"  File.from_local (upload): {rate(flyte_up):8.1f} MiB/s   bare obstore put: {rate(bare_up):8.1f} MiB/s"
        f"   File/bare {bare_up / flyte_up:.2f}"
    )
    print(
        f"  File download (other cluster): {rate(flyte_down):8.1f} MiB/s   bare obstore get: {rate(bare_down):8.1f}"
        f" MiB/s   File/bare {bare_down / flyte_down:.2f}"
    )
    print(
        f"  gateway: blob bytes {through} (its API's received and sent, read back to check);"
        f" peak RSS {gateway_peak / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
