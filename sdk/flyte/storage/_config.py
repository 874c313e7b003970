"""Flyte 2's object-store configuration objects, mapped onto obstore's settings.

Without one, a store is configured the way the gateway's blob store is: from the usual environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `GOOGLE_*`, `AZURE_*`), which obstore
reads itself. `flyte.init(storage=S3(...))` (or `configure`) sets values that take precedence over it; Flyte 2's
own variables (`FLYTE_AWS_ENDPOINT`, `FLYTE_AWS_ACCESS_KEY_ID`, ...) are read by `S3.auto()`.
"""

from __future__ import annotations

import datetime
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, ClassVar

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _seconds(value: datetime.timedelta | float | str) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return value
    return datetime.timedelta(seconds=float(value))


@dataclass(frozen=True)
class Storage:
    """Settings common to every object store."""

    retries: int = 3
    """Retries of a failed request (obstore's `max_retries`)."""
    backoff: datetime.timedelta = datetime.timedelta(seconds=5)
    """The first retry's delay, doubling after each (at most 16 s)."""
    enable_debug: bool = False
    attach_execution_metadata: bool = True

    _ENV: ClassVar[dict[str, str]] = {
        "retries": "FLYTE_STORAGE_RETRIES",
        "backoff": "FLYTE_STORAGE_BACKOFF_SECONDS",
        "enable_debug": "FLYTE_STORAGE_DEBUG",
    }

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"Storage.retries must be a whole number >= 0, not {self.retries!r}")
        object.__setattr__(self, "backoff", _seconds(self.backoff))

    @classmethod
    def _from_env(cls) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if value := os.environ.get(cls._ENV["retries"]):
            found["retries"] = int(value)
        if value := os.environ.get(cls._ENV["backoff"]):
            found["backoff"] = float(value)
        if value := os.environ.get(cls._ENV["enable_debug"]):
            found["enable_debug"] = value.lower() in ("1", "true", "yes")
        return found

    @classmethod
    def auto(cls) -> Storage:
        """The settings in the environment (Flyte 2's variable names)."""
        return cls(**cls._from_env())

    def retry_config(self) -> dict[str, Any]:
        return {
            "max_retries": self.retries,
            "backoff": {"base": 2, "init_backoff": self.backoff, "max_backoff": datetime.timedelta(seconds=16)},
            "retry_timeout": datetime.timedelta(minutes=3),
        }

    def store_config(self) -> dict[str, Any]:
        """obstore's `config=` for this kind of store: only what was set, so the environment fills the rest."""
        return {}

    def client_options(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class S3(Storage):
    """An S3-compatible store (AWS, MinIO, SeaweedFS)."""

    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    region: str | None = None
    addressing_style: str | None = None
    """"virtual" (bucket in the host name) or "path"."""

    _S3_ENV: ClassVar[dict[str, str]] = {
        "endpoint": "FLYTE_AWS_ENDPOINT",
        "access_key_id": "FLYTE_AWS_ACCESS_KEY_ID",
        "secret_access_key": "FLYTE_AWS_SECRET_ACCESS_KEY",
        "addressing_style": "FLYTE_AWS_S3_ADDRESSING_STYLE",
    }

    @classmethod
    def auto(cls, region: str | None = None) -> S3:
        found = cls._from_env()
        found.update({name: os.environ[var] for name, var in cls._S3_ENV.items() if os.environ.get(var)})
        if region:
            found["region"] = region
        return cls(**found)

    @classmethod
    def for_sandbox(cls) -> S3:
        """Flyte 2's local sandbox (MinIO on port 4566)."""
        return cls(endpoint="http://localhost:4566", access_key_id="minio", secret_access_key="miniostorage")

    def store_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name in ("endpoint", "access_key_id", "secret_access_key", "region"):
            if (value := getattr(self, name)) is not None:
                config[name] = value
        if self.addressing_style is not None:
            config["virtual_hosted_style_request"] = self.addressing_style == "virtual"
        return config

    def client_options(self) -> dict[str, Any]:
        endpoint = self.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # Plain http only to a server on this machine (a local S3 server), as the gateway allows; never remotely.
        if endpoint and endpoint.startswith("http://"):
            if urllib.parse.urlsplit(endpoint).hostname not in _LOOPBACK:
                raise ValueError(f"the object store endpoint {endpoint} is plain http on a remote host: use https")
            return {"allow_http": True}
        return {}


@dataclass(frozen=True)
class GCS(Storage):
    """Google Cloud Storage (credentials from `GOOGLE_APPLICATION_CREDENTIALS` or the metadata server)."""

    @classmethod
    def auto(cls) -> GCS:
        return cls(**cls._from_env())


@dataclass(frozen=True)
class ABFS(Storage):
    """Azure Blob Storage / Data Lake (`abfs://`, `abfss://`)."""

    account_name: str | None = None
    account_key: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    _AZURE_ENV: ClassVar[dict[str, str]] = {
        "account_name": "AZURE_STORAGE_ACCOUNT_NAME",
        "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
        "tenant_id": "AZURE_TENANT_ID",
        "client_id": "AZURE_CLIENT_ID",
        "client_secret": "AZURE_CLIENT_SECRET",
    }

    @classmethod
    def auto(cls) -> ABFS:
        found: dict[str, Any] = {name: os.environ[var] for name, var in cls._AZURE_ENV.items() if os.environ.get(var)}
        return cls(**found)

    def store_config(self) -> dict[str, Any]:
        return {name: value for name in self._AZURE_ENV if (value := getattr(self, name)) is not None}


_configured: Storage | None = None


def configure(storage: Storage | None) -> None:
    """Use `storage` for the object stores of its kind from now on (None: the environment alone)."""
    global _configured
    if storage is not None and not isinstance(storage, Storage):
        raise TypeError(f"storage must be flyte.storage.S3, GCS or ABFS, not {type(storage).__name__}")
    _configured = storage


def settings_for(scheme: str) -> Storage:
    """The configured settings for a URI scheme, or that kind's defaults from the environment."""
    kind: type[Storage] = {"s3": S3, "gs": GCS, "abfs": ABFS, "abfss": ABFS}.get(scheme, Storage)
    if isinstance(_configured, kind):
        return _configured
    return kind.auto()
