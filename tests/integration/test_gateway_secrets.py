"""The secret store through a real gateway process: values are sealed at rest, write-only through the API, per
project; a gateway without a key keeps none; a key file others may read is refused."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api
from processes import GatewayProcess, gateway_command

from gateway._secrets import generate_key_file

VALUE = "s3cr3t-value-4242"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("keyed")
    generate_key_file(home / "secrets.key")
    process = GatewayProcess(
        f"sqlite:{home / 'state.db'}", home, extra_args=["--secrets-key-file", str(home / "secrets.key")]
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def admin(keyed: GatewayProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keyed.token}"}) as session:
        yield Api(keyed.endpoint, session)


async def _token(api: Api, scopes: list[str], projects: list[str]) -> str:
    status, body = await api.call("POST", "/api/v1/tokens", {"scopes": scopes, "projects": projects})
    assert status == 201, body
    return str(body["token"])


async def test_a_secret_is_write_only_sealed_at_rest_and_per_project(admin: Api, keyed: GatewayProcess) -> None:
    status, body = await admin.call("PUT", "/api/v1/secrets/db-password", {"value": VALUE}, project="team-a")
    assert status == 201, body
    assert set(body) == {"project", "name", "updated_at"}
    status, listed = await admin.call("GET", "/api/v1/secrets", project="team-a")
    assert status == 200
    assert [item["name"] for item in listed] == ["db-password"]
    assert VALUE not in str(listed)
    status, other = await admin.call("GET", "/api/v1/secrets", project="team-b")
    assert other == []
    # At rest only the sealed form is stored.
    stored = b"".join(path.read_bytes() for path in keyed.home.glob("state.db*"))  # the database and its WAL
    assert b"/flyte/secrets/team-a/db-password" in stored
    assert VALUE.encode() not in stored
    # A token of another project can neither write nor list this project's secrets.
    other_token = await _token(admin, ["deploy"], ["team-b"])
    headers = {"Authorization": f"Bearer {other_token}"}
    status, _ = await admin.call("PUT", "/api/v1/secrets/x", {"value": "v"}, headers=headers, project="team-a")
    assert status == 403
    status, _ = await admin.call("GET", "/api/v1/secrets", headers=headers, project="team-a")
    assert status == 403
    status, body = await admin.call("DELETE", "/api/v1/secrets/db-password", project="team-a")
    assert status == 200
    assert VALUE not in str(body)
    status, body = await admin.call("DELETE", "/api/v1/secrets/db-password", project="team-a")
    assert status == 404


async def test_bad_secret_requests_are_400(admin: Api) -> None:
    status, body = await admin.call("PUT", "/api/v1/secrets/bad%20name", {"value": "v"})
    assert status == 400
    assert "bad name" in body["message"]
    status, body = await admin.call("PUT", "/api/v1/secrets/ok", {"value": 3})
    assert status == 400
    status, body = await admin.call("PUT", "/api/v1/secrets/ok", {"value": "v", "extra": 1})
    assert status == 400


async def test_a_gateway_without_a_key_keeps_no_secrets(api: Api) -> None:
    status, body = await api.call("PUT", "/api/v1/secrets/x", {"value": "v"})
    assert status == 503
    assert "--secrets-key-file" in body["message"]


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "secrets.key"
    generate_key_file(key)
    key.chmod(0o644)
    result = subprocess.run(
        gateway_command("memory", extra_args=["--no-write-config", "--secrets-key-file", str(key)]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "chmod 600" in result.stderr
