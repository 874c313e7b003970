"""Two tenants on one federation, as an attacker sees it: a `run` token for project alpha and one for beta, and
plain HTTP calls whose refusals must be `{code, message}` without a traceback."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from federation import Federation, call

import flyte

TASKS = """
import asyncio
import os

import flyte

env = flyte.TaskEnvironment("sec_tasks")


@env.task
async def add_one(x: int) -> int:
    return x + 1


@env.task(max_inline_io_bytes=64)
async def small(text: str) -> int:
    return len(text)


@env.task
async def hold(path: str) -> int:
    while not os.path.exists(path):
        await asyncio.sleep(0.05)
    return 1
"""
"""The attacks' targets, deployed in project alpha: `add_one`, `small` (64 inline bytes at most) and `hold`, which
runs until its `path` exists."""


@dataclass
class Tenants:
    fed: Federation
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for project in ("alpha", "beta"):
            self.tokens[project] = self.fed.mint("run", projects=[project])

    @property
    def root(self) -> Path:
        return self.fed.root

    def as_admin(self, project: str) -> None:
        """Point this process's SDK at the federation, in `project`, with the admin token (it deploys)."""
        flyte.init(endpoint=self.fed.endpoint, project=project, api_key=self.fed.tokens["admin"], insecure=True)

    def deploy(self, project: str, module: ModuleType) -> None:
        self.as_admin(project)
        flyte.deploy(module.env)

    def load(self, name: str, source: str) -> ModuleType:
        return self.fed.load(name, source)

    def call(self, method: str, path: str, body: Any = None, *, as_: str = "alpha") -> tuple[int, Any]:
        """(status, decoded JSON) of one request with tenant `as_`'s token (or "admin")."""
        token = self.fed.tokens["admin"] if as_ == "admin" else self.tokens[as_]
        data = json.dumps(body).encode() if body is not None else None
        return call(self.fed, method, path, data, token)


def json_value(text: str, digest_of: str | None = None) -> dict[str, str]:
    """A JSON wire value; `digest_of` claims the digest of other text (a forgery)."""
    digest = hashlib.sha256((text if digest_of is None else digest_of).encode()).hexdigest()
    return {"kind": "json", "digest": digest, "json_text": text}


class _Creates:
    """Unpickling this opens `path` for writing: the marker proves the payload ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def pickle_value(marker: Path) -> dict[str, str]:
    """A pickle wire value (with its true digest) that creates `marker` when anyone unpickles it."""
    data = pickle.dumps(_Creates(marker))
    return {"kind": "pickle", "digest": hashlib.sha256(data).hexdigest(), "pickle_b64": base64.b64encode(data).decode()}
