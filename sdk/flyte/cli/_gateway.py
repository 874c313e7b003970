"""`flyte gateway serve` and `flyte gateway token create`: the gateway's own commands.

The gateway package is imported only inside these commands: `flyte` never imports it otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from flyte._paths import flyte_home, private_dir

from ._errors import CliError, CliUsageError

if TYPE_CHECKING:
    from gateway.store import Store

T = TypeVar("T")


@click.group()
def gateway() -> None:
    """Run and administer a gateway."""


@gateway.command("serve")
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="sqlite:PATH (default: $FLYTE_HOME/gateway/state.db), memory, or etcd://HOST:PORT.",
)
@click.option("--blobs", type=click.Path(file_okay=False, path_type=Path), default=None, help="Blob directory.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--write-config/--no-write-config",
    default=True,
    show_default=True,
    help="On a loopback address, point ~/.flyte/config.yaml at this gateway with an admin token.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Placement policy file (YAML); SIGHUP reloads it. Default: the policy in the store, else the built-in one.",
)
@click.option(
    "--secrets-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A 256-bit key (base64, mode 0600) that seals the secret store; without it the gateway keeps no secrets.",
)
@click.option(
    "--retain-runs",
    default=None,
    metavar="DURATION",
    help="Delete ended runs (actions, placements, spans, logs) this long after they ended: 30d, 12h, 30s. "
    "Default: keep forever.",
)
@click.option(
    "--retain-project",
    "retain_projects",
    multiple=True,
    metavar="NAME=DURATION",
    help="A project's own retention, overriding --retain-runs (repeatable).",
)
@click.option(
    "--blob-grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="With retention on: an unreferenced blob is collected once it is this old.",
)
@click.option(
    "--history-kept",
    default=None,
    type=click.IntRange(1),
    metavar="REVISIONS",
    help="Store revisions of history kept for watches to resume from (default 100000); older history is compacted.",
)
def serve(
    store_url: str | None,
    blobs: Path | None,
    host: str,
    port: int,
    write_config: bool,
    policy_file: Path | None,
    secrets_key_file: Path | None,
    retain_runs: str | None,
    retain_projects: tuple[str, ...],
    blob_grace: str,
    history_kept: int | None,
) -> None:
    """Serve the gateway API (and, later, the UI) until SIGTERM or Ctrl-C."""
    from gateway._retention import Retention, parse_duration, parse_project_retention
    from gateway._serve import default_config_path
    from gateway._serve import serve as run_gateway

    try:
        retention = Retention(
            runs=parse_duration(retain_runs) if retain_runs is not None else None,
            projects=parse_project_retention(retain_projects),
            blob_grace=0.0 if blob_grace.strip() in ("0", "0s") else parse_duration(blob_grace),
        )
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None

    # Everything the gateway writes (state, its WAL, logs, blobs) holds every run's inputs and outputs: only this
    # user may read it, whatever the umask it was started with.
    os.umask(0o077)
    home = private_dir(flyte_home() / "gateway")
    store_url = store_url or f"sqlite:{home / 'state.db'}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            run_gateway(
                store_url,
                blobs or home / "blobs",
                host,
                port,
                default_config_path() if write_config else None,
                policy_file=policy_file,
                secrets_key_file=secrets_key_file,
                retention=retention,
                history_kept=history_kept,
            )
        )
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


_STORE_OPTION = click.option(
    "--store",
    "store_url",
    required=True,
    metavar="URL",
    help="sqlite:PATH or etcd://HOST:PORT.",
)
_BLOBS_OPTION = click.option(
    "--with-blobs",
    "blobs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="The gateway's blob directory: its blobs go into (come out of) the backup, a tar file then.",
)


@gateway.command("backup")
@_STORE_OPTION
@_BLOBS_OPTION
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup(store_url: str, blobs: Path | None, out: Path) -> None:
    """Write every key of the store at one revision to OUT (JSON lines; a tar file with --with-blobs).

    Safe beside a running gateway: a SQLite file is opened read-only, and the keys are read at one revision.
    """
    from gateway._backup import backup as make_backup

    if blobs is not None and not blobs.is_dir():
        raise CliUsageError(f"--with-blobs {blobs}: no such directory")
    summary = _in_store(store_url, lambda store: make_backup(store, out, blobs), read_only=True)
    blob_note = f" and {summary.blobs} blobs" if blobs is not None else ""
    click.echo(f"backed up {summary.keys} keys{blob_note} at revision {summary.revision} to {out}")


@gateway.command("restore")
@_STORE_OPTION
@_BLOBS_OPTION
@click.option("--force", is_flag=True, help="Restore into a store that already holds keys (same names are replaced).")
@click.argument("source", metavar="IN", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(store_url: str, blobs: Path | None, force: bool, source: Path) -> None:
    """Write the keys of a backup into the store (empty unless --force); start the gateway on it afterwards."""
    from gateway._backup import restore as do_restore

    summary = _in_store(store_url, lambda store: do_restore(store, source, blobs, force=force))
    blob_note = f" and {summary.blobs} blobs into {blobs}" if blobs is not None else ""
    click.echo(f"restored {summary.keys} keys{blob_note} (backed up at revision {summary.revision})")


def _in_store(store_url: str, work: Callable[[Store], Awaitable[T]], *, read_only: bool = False) -> T:
    """Run `work` on the store `store_url` names, turning refusals into a clean CLI error."""
    from gateway._backup import BackupError
    from gateway.store import StoreError, open_store

    async def run() -> T:
        store = await open_store(store_url, read_only=read_only)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    except (BackupError, StoreError, OSError) as exc:
        raise CliError(str(exc)) from None


@gateway.group("token")
def token() -> None:
    """Bearer tokens."""


@token.command("create")
@click.option("--scope", "scopes", multiple=True, required=True, help="admin, deploy, run, agent:CLUSTER, worker:RUN.")
@click.option("--project", "projects", multiple=True, help="Limit the token to these projects (repeatable).")
@click.option("--description", default="", help="What the token is for.")
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Write straight into a store (gateway stopped); without it, ask the configured gateway (needs admin).",
)
def token_create(scopes: tuple[str, ...], projects: tuple[str, ...], description: str, store_url: str | None) -> None:
    """Make a token and print it: the only time it is shown."""
    from gateway._auth import validate_scope

    try:
        for scope in scopes:
            validate_scope(scope)
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    if store_url is not None:
        click.echo(asyncio.run(_token_in_store(store_url, list(scopes), list(projects), description)))
        return
    import flyte
    from flyte._client import GatewayError, call_sync, client_for
    from flyte._wire import TokenRequest

    flyte.init_from_config()
    try:
        answer = call_sync(
            client_for().request(
                "POST",
                "/api/v1/tokens",
                json_body=TokenRequest(scopes=list(scopes), projects=list(projects), description=description),
            )
        )
    except (GatewayError, ValueError) as exc:
        raise CliError(str(exc)) from None
    click.echo(answer["token"])


async def _token_in_store(store_url: str, scopes: list[str], projects: list[str], description: str) -> str:
    from gateway._auth import create_token
    from gateway.store import open_store

    store = await open_store(store_url)
    try:
        return await create_token(store, scopes, projects, description)
    finally:
        await store.close()
