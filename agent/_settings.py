"""What an attempt gets besides its code and assignment: the task's environment variables and its secrets (later
the Python of its image), prepared once per attempt by the agent and handed to whichever way it runs (a cold
process, a spare, a pool's workers, a pod).

Secrets are fetched from the gateway with the attempt's own run-scoped token, so the gateway answers only the
secrets the action's deployed task declares, from the run's project. They travel as `secret_env` (a pod reads them
from a Secret, a process gets them in its environment) and, for a `Secret` with a `mount`, as files of mode 0600
under the attempt's own directory, removed when it ends. Nothing here logs a value.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from flyte._wire import Assignment, SecretValues, TaskSpec

SECRETS_DIR_ENV = "FLYTE_SECRETS_DIR"
"""Where a process's mounted secrets are: a `Secret(mount="/etc/x")` is the file `$FLYTE_SECRETS_DIR/etc/x/KEY`."""


class SettingsError(Exception):
    """The task's settings cannot be met (a secret is not set): the user's to fix, so the attempt fails at once."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


WORKER_PYTHON = os.environ.get("FLYTE_WORKER_PYTHON") or sys.executable
"""The interpreter task processes run with, unless their image names another: the agent's own by default. With
`--run-as`, the task's user must be able to run it (an interpreter under root's home is not)."""


@dataclass(frozen=True)
class Prepared:
    env: dict[str, str] = field(default_factory=dict)
    """The task's `env_vars`: over the agent's own environment, under the FLYTE_* variables the worker needs."""
    secret_env: dict[str, str] = field(default_factory=dict)
    """Secrets by the variable they are exposed as."""
    secret_files: dict[str, str] = field(default_factory=dict)
    """Mounted secrets: their path as the task asked (`mount/key`, absolute) to their value."""
    python: str = WORKER_PYTHON
    """The interpreter the attempt runs with."""

    def with_files_in(self, directory: Path) -> Prepared:
        """Write the mounted secrets under `directory` (0700, files 0600) and say where in the environment."""
        if not self.secret_files:
            return self
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, value in self.secret_files.items():
            target = directory / path.lstrip("/")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(value)
        return Prepared({**self.env, SECRETS_DIR_ENV: str(directory)}, self.secret_env, self.secret_files, self.python)


def remove_files(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


async def prepare(http: aiohttp.ClientSession, gateway: str, assignment: Assignment, task: TaskSpec) -> Prepared:
    """The task's environment and secrets for this attempt (secrets fetched with the attempt's run token)."""
    env = {**task.env_vars, **assignment.env_vars}
    if not task.secrets:
        return Prepared(env=env)
    url = f"{gateway}/api/v1/runs/{assignment.run}/actions/{assignment.action}/secrets"
    async with http.post(url, headers={"Authorization": f"Bearer {assignment.token}"}) as response:
        if response.status == 404:
            body = await response.json(content_type=None)
            if body.get("code") == "secret_not_found":
                raise SettingsError("SecretNotFound", str(body.get("message")))
        response.raise_for_status()
        values = SecretValues.model_validate_json(await response.read()).values
    secret_env = {ref.env_var: values[ref.key] for ref in task.secrets}
    files = {f"{ref.mount.rstrip('/')}/{ref.key}": values[ref.key] for ref in task.secrets if ref.mount is not None}
    return Prepared(env=env, secret_env=secret_env, secret_files=files)
