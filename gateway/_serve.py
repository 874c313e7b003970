"""`flyte gateway serve`: open the store, build the app, listen, and stop cleanly on SIGTERM or SIGINT.

Bound to a loopback address, the gateway makes itself usable at once: it mints an admin token and writes it, with
its endpoint, into the user's config (`~/.flyte/config.yaml` unless told otherwise), so `flyte` commands and
`flyte.init_from_config()` find it and the user never handles the token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import yaml
from aiohttp import web

from flyte._background import Background
from flyte._config import write_config
from gateway._app import create_app
from gateway._auth import create_token
from gateway._blobs import open_blob_store
from gateway._dispatch import DISPATCHER
from gateway._notify import SmtpSettings
from gateway._retention import Retention
from gateway._secrets import load_key
from gateway.store import Store, open_store
from policies import parse_policy

log = logging.getLogger("flyte.gateway")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_config_path() -> Path:
    return Path.home() / ".flyte" / "config.yaml"


def _points_elsewhere(path: Path) -> str | None:
    """The endpoint of an existing config that names a gateway on another host, if it does."""
    if not path.exists():
        return None
    existing = yaml.safe_load(path.read_text()) or {}
    current = str((existing.get("admin") or {}).get("endpoint", ""))
    host = current.split("://")[-1].split(":")[0].strip("/[]")
    return current if current and not is_loopback(host) else None


async def write_local_config(store: Store, endpoint: str, path: Path) -> bool:
    """Point the local config at this gateway with a fresh admin token, unless it points elsewhere."""
    elsewhere = _points_elsewhere(path)
    if elsewhere is not None:
        log.warning("%s points at %s; not replacing it with this local gateway", path, elsewhere)
        return False
    token = await create_token(store, ["admin"], description="local config of the embedded gateway")
    write_config(path, endpoint, None, None, insecure=True, force=True, api_key=token)
    return True


async def serve(
    store_url: str,
    blobs: Path,
    host: str,
    port: int,
    config_path: Path | None,
    ready: asyncio.Event | None = None,
    policy_file: Path | None = None,
    secrets_key_file: Path | None = None,
    retention: Retention | None = None,
    history_kept: int | None = None,
    replica: str | None = None,
    smtp: SmtpSettings | None = None,
    blobs_url: str | None = None,
    blobs_endpoint: str | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT. Blobs go to the directory `blobs`, or to the object store `blobs_url` if
    given (`blobs` then only places the logs beside it)."""
    policy_text = None
    # A bad key file is refused before anything starts, like a bad policy.
    secret_key = load_key(secrets_key_file) if secrets_key_file is not None else None
    if policy_file is not None:
        policy_text = await asyncio.to_thread(policy_file.read_text)
        parse_policy(policy_text, policy_file.name)  # refuse a bad file before anything starts
    store = await open_store(store_url)
    try:
        blob_store = open_blob_store(blobs_url or blobs, store, endpoint=blobs_endpoint)
    except BaseException:
        await store.close()
        raise
    app = create_app(
        store,
        blobs,
        blobs=blob_store,
        secret_key=secret_key,
        retention=retention,
        history_kept=history_kept,
        replica=replica,
        smtp=smtp,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    endpoint = f"http://{host}:{bound[1]}"
    if config_path is not None and is_loopback(host) and await write_local_config(store, endpoint, config_path):
        log.info("wrote %s", config_path)
    log.info("gateway listening on %s (store %s, blobs %s)", endpoint, store_url, blob_store.description)
    print(f"flyte gateway listening on {endpoint}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if policy_file is not None and policy_text is not None:
        await app[DISPATCHER].apply_policy(policy_text, policy_file.name)
        reloads = Background()

        def reload() -> None:
            reloads.spawn(_reload_policy(app, policy_file))

        loop.add_signal_handler(signal.SIGHUP, reload)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await store.close()


async def _reload_policy(app: web.Application, policy_file: Path) -> None:
    """SIGHUP: apply the policy file again; a bad edit is logged and the policy in force stays."""
    try:
        await app[DISPATCHER].apply_policy(await asyncio.to_thread(policy_file.read_text), policy_file.name)
    except (OSError, ValueError) as error:
        log.error("policy %s not reloaded, the policy in force stays: %s", policy_file, error)
