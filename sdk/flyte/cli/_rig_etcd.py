"""The rig's etcd, for `flyte rig up --replicas N`: one member on free loopback ports, its data under the rig's
directory. Replicas share a store, and SQLite is one process's; a single member is enough for a rig (a production
store has three: see docs/operations.md, "Running replicas")."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ._errors import CliError
from ._s3_local import free_port

ETCD_INSTALL = "apt-get install etcd-server (Debian's etcd), or put an `etcd` binary on PATH"


def etcd_command(directory: Path) -> tuple[list[str], str]:
    """The command that starts the rig's etcd, and its client URL (etcd://...)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise CliError(f"flyte rig up --replicas needs etcd: {ETCD_INSTALL}")
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    command = [
        binary,
        "--name=rig",
        f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=rig={peer}",
        "--log-level=warn",
    ]
    return command, "etcd://" + client.removeprefix("http://")


def wait_for_etcd(store_url: str, running: Callable[[], bool], log: Path, within: float = 30.0) -> None:
    """Until etcd's /health says it is healthy (it elected itself); a CliError naming its log otherwise."""
    health = "http://" + store_url.removeprefix("etcd://") + "/health"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and running():
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:
                if json.loads(answer.read()).get("health") == "true":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise CliError(f"etcd did not come up (see {log}):\n{tail}")


def readiness(endpoint: str) -> str:
    """What a replica's /readyz says of it, in a few words: `leads`, `follows`, or why it is not ready."""
    try:
        with urllib.request.urlopen(f"{endpoint}/readyz", timeout=3) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return "not answering"
    name = body.get("replica", "?")
    if not body.get("ready", False):
        return f"replica {name}: not ready ({body.get('reason', 'unknown')})"
    return f"replica {name}: {'leads' if body.get('leading') else 'follows'}"


def stop_order(pids: dict[str, int]) -> list[str]:
    """Agents first, then the gateways, then the stores they keep blobs and state in."""
    stores = [k for k in ("s3", "etcd") if k in pids]
    gateways = [k for k in pids if k.startswith("gateway")]
    return [k for k in pids if k not in stores and k not in gateways] + gateways + stores
