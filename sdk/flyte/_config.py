"""Configuration and `flyte.init`: decides whether the SDK runs tasks locally or against a remote endpoint.

`init()` sets the process-wide `Config` from arguments; `init_from_config()` reads a flytectl-style YAML file
(found by a fixed search order when no path is given). `FLYTE_ENDPOINT`, `FLYTE_PROJECT`, `FLYTE_DOMAIN`
and `FLYTE_API_KEY` override the file, so a worker started by an agent can be pointed at the right control
plane without a config file. Everything else in the SDK asks `current_config()` / `is_remote()`.
"""

from __future__ import annotations

import contextvars
import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ._logging import set_log_level

if TYPE_CHECKING:
    from .storage import Storage

__all__ = [
    "Config",
    "config_search_paths",
    "current_config",
    "current_domain",
    "current_project",
    "endpoints_of",
    "find_config_file",
    "init",
    "init_from_api_key",
    "init_from_config",
    "init_in_cluster",
    "is_control_plane_available",
    "is_remote",
    "load_config",
    "normalize_endpoint",
    "write_config",
]

DEFAULT_PROJECT = "default"
DEFAULT_DOMAIN = "development"


@dataclass(frozen=True)
class Config:
    """Where tasks run. `endpoint` None means local mode."""

    endpoint: str | None = None
    insecure: bool = False
    project: str = DEFAULT_PROJECT
    domain: str = DEFAULT_DOMAIN
    # Kept out of repr so a logged or printed config never leaks the key.
    api_key: str | None = field(default=None, repr=False)
    source: Path | None = None
    """The file this config was read from, if any."""
    root_dir: Path | None = None
    """The project's root: the code bundle's paths are relative to it (default: the files' common directory)."""

    @property
    def is_remote(self) -> bool:
        return self.endpoint is not None


_current: Config | None = None
_attempt: contextvars.ContextVar[Config | None] = contextvars.ContextVar("flyte_attempt_config", default=None)
"""A worker's config for the attempt running in this context: a pool worker runs several at once, each with its
own token (`use_attempt_config`)."""


def current_config() -> Config:
    """The config of the attempt running in this context (in a worker); else the one set by `init` /
    `init_from_config`; local mode if neither was called."""
    attempt = _attempt.get()
    if attempt is not None:
        return attempt
    return _current if _current is not None else Config()


def use_attempt_config(endpoint: str, token: str, project: str, domain: str) -> None:
    """A worker's config for the attempt about to run in this context, and the process's for code that runs outside
    any attempt's context (a thread the task started itself). As `init(endpoint, project, domain, token)`, whose
    explicit arguments leave nothing to the environment, without re-reading it: this runs for every attempt."""
    global _current
    config = Config(
        endpoint=_normalized(endpoint),
        project=project or DEFAULT_PROJECT,
        domain=domain or DEFAULT_DOMAIN,
        api_key=token,
    )
    _current = config
    _attempt.set(config)


@functools.lru_cache(maxsize=8)
def _normalized(endpoint: str) -> str:
    return normalize_endpoint(endpoint)


def is_remote() -> bool:
    return current_config().is_remote


def normalize_endpoint(endpoint: str, insecure: bool = False) -> str:
    """Turn the endpoint spellings flytectl accepts into an http(s) base URL, or several separated by commas (the
    replicas of one gateway, tried in turn: see `endpoints_of`).

    `dns:///host:port` and bare `host:port` get https, or http when `insecure`; http/https URLs keep their
    scheme (only a trailing slash is dropped, so callers can append paths).
    """
    if "," in endpoint:
        parts = [part for part in endpoint.split(",") if part.strip()]
        if not parts:
            raise ValueError("endpoint is empty")
        return ",".join(_normalize_one(part, insecure) for part in parts)
    return _normalize_one(endpoint, insecure)


def endpoints_of(endpoint: str) -> list[str]:
    """The gateway replicas a (normalised) endpoint names, in the order they are tried."""
    return [part for part in endpoint.split(",") if part]


def _normalize_one(endpoint: str, insecure: bool) -> str:
    value = endpoint.strip()
    if not value:
        raise ValueError("endpoint is empty")
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        return value.rstrip("/")
    if lowered.startswith("dns://"):
        # gRPC's resolver syntax: `dns:///host` (empty authority) or, less often, `dns://authority/host`.
        value = value[len("dns://") :]
        value = value.lstrip("/") if value.startswith("/") else value.split("/", 1)[-1]
    elif "://" in value:
        scheme = value.split("://", 1)[0]
        raise ValueError(f"unsupported endpoint scheme {scheme}:// in {endpoint!r}; use http(s):// or dns:///")
    host = value.rstrip("/")
    if not host:
        raise ValueError(f"endpoint {endpoint!r} names no host")
    return f"{'http' if insecure else 'https'}://{host}"


def init(
    endpoint: str | None = None,
    project: str | None = None,
    domain: str | None = None,
    api_key: str | None = None,
    insecure: bool = False,
    *,
    org: str | None = None,
    root_dir: str | Path | None = None,
    log_level: int | str | None = None,
    log_format: str | None = None,
    storage: Storage | None = None,
) -> None:
    """Set the process-wide config. No endpoint (and no `FLYTE_ENDPOINT`) means local mode.

    `storage` (`flyte.storage.S3`, `GCS` or `ABFS`) configures `flyte.storage`'s access to that kind of object store.

    Arguments left as None fall back to the `FLYTE_*` environment variables, then to the defaults. `org` and
    `log_format` are accepted for Flyte 2 programs and have no effect here (there is one organisation per gateway,
    and logs use the standard `logging` format).
    """
    global _current
    set_log_level(log_level)
    if storage is not None:
        from .storage._config import configure

        configure(storage)
    base = Config(
        endpoint=normalize_endpoint(endpoint, insecure) if endpoint else None,
        insecure=insecure,
        project=project or DEFAULT_PROJECT,
        domain=domain or DEFAULT_DOMAIN,
        api_key=api_key,
        root_dir=_root_dir(root_dir),
    )
    _current = _apply_env(
        base,
        keep_endpoint=endpoint is not None,
        keep_project=project is not None,
        keep_domain=domain is not None,
        keep_api_key=api_key is not None,
    )
    _attempt.set(None)  # a task that calls `init` itself means it for the rest of its attempt


def init_from_config(
    path_or_config: str | Path | Config | None = None,
    root_dir: str | Path | None = None,
    log_level: int | str | None = None,
    log_format: str | None = None,
    project: str | None = None,
    domain: str | None = None,
) -> None:
    """Set the process-wide config from a YAML file (see `load_config` for how it is found) or a `Config`.

    `project` and `domain` override the file's; `root_dir`, `log_level` and `log_format` are as for `init`.
    """
    global _current
    set_log_level(log_level)
    config = path_or_config if isinstance(path_or_config, Config) else load_config(path_or_config)
    changes: dict[str, Any] = {}
    if root_dir is not None:
        changes["root_dir"] = _root_dir(root_dir)
    if project is not None:
        changes["project"] = project
    if domain is not None:
        changes["domain"] = domain
    _current = replace(config, **changes) if changes else config
    _attempt.set(None)


def init_from_api_key(
    api_key: str | None = None,
    project: str | None = None,
    domain: str | None = None,
    root_dir: str | Path | None = None,
    log_level: int | str | None = None,
    log_format: str | None = None,
    *,
    endpoint: str | None = None,
) -> None:
    """Remote mode with an API key (`FLYTE_API_KEY` when None). Flyte 2's keys embed their endpoint; ours are
    gateway tokens, so the endpoint comes from `endpoint=`, `FLYTE_ENDPOINT` or the config file."""
    key = api_key or os.environ.get("FLYTE_API_KEY")
    if not key:
        raise ValueError("init_from_api_key: no api_key given and FLYTE_API_KEY is not set")
    target = endpoint or os.environ.get("FLYTE_ENDPOINT") or load_config().endpoint
    if not target:
        raise ValueError(
            "init_from_api_key: no endpoint; pass endpoint=, set FLYTE_ENDPOINT, "
            "or write one with `flyte create config`"
        )
    init(target, project, domain, key, root_dir=root_dir, log_level=log_level, log_format=log_format)


def init_in_cluster(
    org: str | None = None,
    project: str | None = None,
    domain: str | None = None,
    api_key: str | None = None,
    endpoint: str | None = None,
    insecure: bool = False,
) -> dict[str, Any]:
    """Initialise inside a worker: the agent passes the endpoint, project, domain and token as `FLYTE_*` variables.

    Returns the settings used (endpoint, project, domain, insecure), as Flyte 2 does.
    """
    init(endpoint, project, domain, api_key, insecure, org=org)
    config = current_config()
    return {"endpoint": config.endpoint, "project": config.project, "domain": config.domain, "insecure": insecure}


def is_control_plane_available() -> bool:
    """Whether runs go to a gateway (remote mode) rather than run in this process."""
    return current_config().is_remote


def current_project() -> str:
    """The project of the running task, or else of the current config."""
    from ._context import current_action

    action = current_action.get()
    return action.project if action is not None else current_config().project


def current_domain() -> str:
    """The domain of the running task, or else of the current config."""
    from ._context import current_action

    action = current_action.get()
    return action.domain if action is not None else current_config().domain


def _root_dir(value: str | Path | None) -> Path | None:
    if value is None:
        return None
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"root_dir={str(value)!r} is not a directory")
    return root


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file (the given one, or the first found by `find_config_file`) plus env overrides.

    No file found gives local mode. A given path that does not exist raises FileNotFoundError; a file that
    does not parse or has a field of the wrong type raises ValueError naming the file and the field.
    """
    source: Path | None
    if path is not None:
        source = Path(path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"flyte config file not found: {source}")
    else:
        source = find_config_file()
    config = _read_file(source) if source is not None else Config()
    return _apply_env(config)


def find_config_file() -> Path | None:
    """The first existing config file, in order: `./config.yaml`, `./.flyte/config.yaml`,
    `<git root>/.flyte/config.yaml`, `$FLYTECTL_CONFIG`, `~/.flyte/config.yaml`."""
    for candidate in config_search_paths():
        if candidate.is_file():
            return candidate
    return None


def config_search_paths() -> list[Path]:
    """Where `find_config_file` looks, in order (for messages that say where no config was found)."""
    cwd = Path.cwd()
    found = [cwd / "config.yaml", cwd / ".flyte" / "config.yaml"]
    git_root = _git_root(cwd)
    if git_root is not None:
        found.append(git_root / ".flyte" / "config.yaml")
    flytectl = os.environ.get("FLYTECTL_CONFIG")
    if flytectl:
        found.append(Path(flytectl).expanduser())
    # The user's own config location, deliberately not FLYTE_HOME (which only moves local state).
    found.append(Path.home() / ".flyte" / "config.yaml")
    return found


def _git_root(start: Path) -> Path | None:
    # `.git` may be a file (worktrees, submodules), so any entry counts.
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


class _AdminSection(BaseModel):
    # flytectl configs carry many admin keys (authType, clientId, ...) that mean nothing here.
    model_config = ConfigDict(extra="ignore")

    endpoint: str | None = None
    insecure: bool | None = None
    api_key: str | None = None


class _TaskSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project: str | None = None
    domain: str | None = None


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # None covers a section written with no body (`admin:` on its own line).
    admin: _AdminSection | None = None
    task: _TaskSection | None = None


def _read_file(source: Path) -> Config:
    try:
        raw: Any = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid flyte config {source}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"invalid flyte config {source}: the top level must be a mapping")
    try:
        parsed = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"invalid flyte config {source}: {problems}") from exc

    admin = parsed.admin or _AdminSection()
    task = parsed.task or _TaskSection()
    insecure = bool(admin.insecure)
    endpoint: str | None = None
    if admin.endpoint:
        try:
            endpoint = normalize_endpoint(admin.endpoint, insecure)
        except ValueError as exc:
            raise ValueError(f"invalid flyte config {source}: admin.endpoint: {exc}") from exc
    return Config(
        endpoint=endpoint,
        insecure=insecure,
        project=task.project or DEFAULT_PROJECT,
        domain=task.domain or DEFAULT_DOMAIN,
        api_key=admin.api_key,
        source=source,
    )


def _apply_env(
    config: Config,
    *,
    keep_endpoint: bool = False,
    keep_project: bool = False,
    keep_domain: bool = False,
    keep_api_key: bool = False,
) -> Config:
    # Empty values count as unset so `FLYTE_ENDPOINT=` in a shell does not force a bogus endpoint.
    env_endpoint = os.environ.get("FLYTE_ENDPOINT") or None
    env_project = os.environ.get("FLYTE_PROJECT") or None
    env_domain = os.environ.get("FLYTE_DOMAIN") or None
    env_api_key = os.environ.get("FLYTE_API_KEY") or None
    changes: dict[str, Any] = {}
    if env_endpoint and not keep_endpoint:
        try:
            changes["endpoint"] = normalize_endpoint(env_endpoint, config.insecure)
        except ValueError as exc:
            raise ValueError(f"invalid FLYTE_ENDPOINT: {exc}") from exc
    if env_project and not keep_project:
        changes["project"] = env_project
    if env_domain and not keep_domain:
        changes["domain"] = env_domain
    if env_api_key and not keep_api_key:
        changes["api_key"] = env_api_key
    return replace(config, **changes) if changes else config


def write_config(
    path: Path,
    endpoint: str,
    project: str | None,
    domain: str | None,
    insecure: bool,
    *,
    force: bool = False,
    api_key: str | None = None,
) -> Path:
    """Write a config file `init_from_config` can read; refuses to replace an existing file unless `force`.

    A file holding an `api_key` is readable by its owner only.
    """
    # Fail before touching the disk if the endpoint could never be loaded back.
    normalize_endpoint(endpoint, insecure)
    # An http:// endpoint is plain http whatever the flag says; the file should not claim otherwise.
    insecure = insecure or endpoint.strip().lower().startswith("http://")
    target = Path(path).expanduser()
    document: dict[str, Any] = {"admin": {"endpoint": endpoint, "insecure": insecure}}
    if api_key is not None:
        document["admin"]["api_key"] = api_key
    task = {key: value for key, value in (("project", project), ("domain", domain)) if value is not None}
    if task:
        document["task"] = task
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "x" makes the existence check and the create one step, so two writers cannot both win.
        with target.open("w" if force else "x", encoding="utf-8") as handle:
            if api_key is not None:
                target.chmod(0o600)
            handle.write(text)
    except FileExistsError:
        raise FileExistsError(
            f"config file {target} already exists; pass force=True (or --force) to overwrite it"
        ) from None
    return target
