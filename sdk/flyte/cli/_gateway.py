"""`flyte gateway serve` and `flyte gateway token create|list|revoke`: the gateway's own commands.

The gateway package is imported only inside these commands: `flyte` never imports it otherwise.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import click

from flyte._collector import collect_less_often
from flyte._paths import flyte_home, private_dir

from ._errors import CliError, CliUsageError
from ._output import OutputFormat, output_option, print_listing

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
@click.option(
    "--blobs",
    default=None,
    metavar="DIR|URL",
    help="Where blobs live: a directory (default: $FLYTE_HOME/gateway/blobs) or an object store, "
    "s3://BUCKET/PREFIX (also gs://, az://), with credentials from the usual AWS_* environment.",
)
@click.option(
    "--blobs-endpoint",
    default=None,
    metavar="URL",
    help="The object store's endpoint, for an S3-compatible server (plain http only on a loopback address).",
)
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
@click.option(
    "--replica",
    default=None,
    metavar="NAME",
    help="This replica's name among gateways sharing one store (default: host name and a random suffix).",
)
@click.option(
    "--smtp-url",
    envvar="FLYTE_SMTP_URL",
    default=None,
    metavar="URL",
    help="Where email notifications go: smtp://[user:password@]host[:port] or smtps://... (env FLYTE_SMTP_URL).",
)
@click.option("--smtp-from", default=None, metavar="ADDRESS", help="The From of email notifications.")
def serve(
    store_url: str | None,
    blobs: str | None,
    blobs_endpoint: str | None,
    host: str,
    port: int,
    write_config: bool,
    policy_file: Path | None,
    secrets_key_file: Path | None,
    retain_runs: str | None,
    retain_projects: tuple[str, ...],
    blob_grace: str,
    history_kept: int | None,
    replica: str | None,
    smtp_url: str | None,
    smtp_from: str | None,
) -> None:
    """Serve the gateway (API, UI, agent and worker connections) until SIGTERM or Ctrl-C. Several replicas may share
    one etcd store: all serve, and one, elected, does the work that must happen once."""
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
    from gateway._notify import SmtpSettings

    smtp = None
    if smtp_url is not None:
        try:
            smtp = SmtpSettings(smtp_url, smtp_from or "flyte@localhost")
        except ValueError as exc:
            raise CliUsageError(str(exc)) from None

    # Everything the gateway writes (state, its WAL, logs, blobs) holds every run's inputs and outputs: only this
    # user may read it, whatever the umask it was started with.
    os.umask(0o077)
    home = private_dir(flyte_home() / "gateway")
    store_url = store_url or f"sqlite:{home / 'state.db'}"
    is_url = blobs is not None and "://" in blobs
    if blobs_endpoint is not None and not is_url:
        raise CliUsageError("--blobs-endpoint is for an object store: give --blobs s3://BUCKET/PREFIX too")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    collect_less_often()
    try:
        asyncio.run(
            run_gateway(
                store_url,
                Path(blobs) if blobs is not None and not is_url else home / "blobs",
                host,
                port,
                default_config_path() if write_config else None,
                policy_file=policy_file,
                secrets_key_file=secrets_key_file,
                retention=retention,
                history_kept=history_kept,
                replica=replica,
                smtp=smtp,
                blobs_url=blobs if is_url else None,
                blobs_endpoint=blobs_endpoint,
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


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_EXPIRY = 10 * 365 * 86400


def _duration(_: click.Context, __: click.Parameter, text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip().lower())
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0.0
    if not 0 < seconds <= _MAX_EXPIRY:
        raise click.BadParameter(f"{text!r} is not a duration up to 10 years such as 90m, 12h, 7d or 4w")
    return seconds


_STORE = click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Use a store directly (gateway stopped); without it, ask the configured gateway (needs admin).",
)


def _ask_gateway(method: str, path: str, body: Any = None) -> Any:
    import flyte
    from flyte._client import GatewayError, call_sync, client_for

    try:
        flyte.init_from_config()
        return call_sync(client_for().request(method, path, json_body=body))
    except (GatewayError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


@token.command("create")
@click.option("--scope", "scopes", multiple=True, required=True, help="admin, deploy, run, agent:CLUSTER, worker:RUN.")
@click.option("--project", "projects", multiple=True, help="Limit the token to these projects (repeatable).")
@click.option("--description", default="", help="What the token is for.")
@click.option(
    "--expires",
    "expires_in",
    default=None,
    callback=_duration,
    metavar="DURATION",
    help="Refuse the token after this long: seconds, or 90m, 12h, 7d, 4w (default: it does not expire).",
)
@_STORE
def token_create(
    scopes: tuple[str, ...],
    projects: tuple[str, ...],
    description: str,
    expires_in: float | None,
    store_url: str | None,
) -> None:
    """Make a token and print it: the only time it is shown."""
    from gateway._auth import validate_scope

    try:
        for scope in scopes:
            validate_scope(scope)
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    if store_url is not None:
        click.echo(asyncio.run(_token_in_store(store_url, list(scopes), list(projects), description, expires_in)))
        return
    from flyte._wire import TokenRequest

    request = TokenRequest(
        scopes=list(scopes), projects=list(projects), description=description, expires_in_seconds=expires_in
    )
    click.echo(_ask_gateway("POST", "/api/v1/tokens", request)["token"])


async def _token_in_store(
    store_url: str, scopes: list[str], projects: list[str], description: str, expires_in: float | None
) -> str:
    from gateway._auth import create_token
    from gateway.store import open_store

    store = await open_store(store_url)
    try:
        return await create_token(store, scopes, projects, description, expires_in)
    finally:
        await store.close()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@token.command("list")
@_STORE
@output_option
def token_list(store_url: str | None, output: OutputFormat) -> None:
    """Stored tokens: id, scopes, projects, when made and when they end. Secrets are never kept, so never shown."""
    from flyte._wire import TokenInfo

    if store_url is not None:
        infos = asyncio.run(_tokens_in_store(store_url))
    else:
        infos = [TokenInfo.model_validate(item) for item in _ask_gateway("GET", "/api/v1/tokens")]
    rows = [
        [i.id, ",".join(i.scopes), ",".join(i.projects) or "*", _when(i.created_at), _when(i.expires_at), i.description]
        for i in infos
    ]
    columns = ["id", "scopes", "projects", "created", "expires", "description"]
    print_listing("tokens", columns, rows, output, objects=infos, message_column="description")


async def _tokens_in_store(store_url: str) -> list[Any]:
    from flyte._wire import TokenInfo
    from gateway._auth import stored_tokens
    from gateway.store import open_store

    store = await open_store(store_url)
    try:
        return [TokenInfo(id=ident, **record.model_dump()) for ident, record in await stored_tokens(store)]
    finally:
        await store.close()


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@_STORE
def token_revoke(token_id: str, store_url: str | None) -> None:
    """Revoke token ID (from `flyte gateway token list`): refused from its next request or socket message on."""
    if store_url is None:
        _ask_gateway("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")
    elif not asyncio.run(_revoke_in_store(store_url, token_id)):
        raise CliError(f"no token with id {token_id}; `flyte gateway token list` lists them")
    click.echo(f"token {token_id} revoked")


async def _revoke_in_store(store_url: str, token_id: str) -> bool:
    from gateway._auth import revoke_token
    from gateway.store import open_store

    store = await open_store(store_url)
    try:
        return await revoke_token(store, token_id) is not None
    finally:
        await store.close()
