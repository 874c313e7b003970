"""Direct transfers to an object store (issue 19): the gateway issues short-lived presigned URLs for one project's
upload of one digest, or for reading one blob, only after the same authorization as the blob API; a URL is refused
by the store once it expires or if pointed at another key; an upload URL is signed with the digest, so the store
itself refuses other bytes, and no byte comes to the gateway to be checked. Against a real gateway process on a
real S3 server (SeaweedFS); a directory store issues none."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from channels import admin_api, gateway_process, headers, token
from integration.gateway_api import Api
from processes import GatewayProcess
from s3_server import S3Server
from waiting import eventually_async

pytestmark = pytest.mark.timeout(120)
URL_SECONDS = 2


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[GatewayProcess]:
    url = f"s3://{s3_server.bucket}/urls-{uuid.uuid4().hex[:8]}"
    env = {**s3_server.env(), "FLYTE_BLOB_URL_SECONDS": str(URL_SECONDS)}
    with gateway_process(tmp_path_factory.mktemp("gateway"), "--blobs", url, **env) as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


async def as_(api: Api, bearer: str, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
    status, body = await api.call(method, path, body, headers=headers(bearer))
    assert isinstance(body, dict), body
    return status, body


async def store_call(
    method: str, url: str, data: bytes | None = None, sent: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A request to the object store itself, with no token of ours: only the URL's signature counts."""
    body = io.BytesIO(data) if data is not None else None
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=sent) as response:
        return response.status, await response.read()


async def blob_bytes(api: Api, direction: str) -> int:
    """The gateway's blob-bytes counter: `received`/`sent` through its blob API, `checked` read back from a store."""
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    prefix = f'flyte_gateway_blob_bytes_total{{direction="{direction}"}}'
    line = next(x for x in str(text).splitlines() if x.startswith(prefix))
    return int(line.rsplit(" ", 1)[1])


async def received(api: Api) -> int:
    return await blob_bytes(api, "received")


async def direct_upload(api: Api, bearer: str, data: bytes, digest: str | None = None) -> tuple[int, dict[str, object]]:
    digest = digest or hashlib.sha256(data).hexdigest()
    status, transfer = await as_(api, bearer, "POST", f"/api/v1/blobs/{digest}/uploads")
    assert status == 201, transfer
    assert (await store_call("PUT", str(transfer["url"]), data, signed_headers(transfer)))[0] == 200
    return await as_(api, bearer, "POST", f"/api/v1/blobs/{digest}/uploads/{transfer['upload']}")


def signed_headers(transfer: dict[str, object]) -> dict[str, str]:
    sent = transfer["headers"]
    assert isinstance(sent, dict)
    return {str(k): str(v) for k, v in sent.items()}


async def test_a_direct_upload_and_download_never_pass_bytes_through_the_blob_api(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    before = await received(api), await blob_bytes(api, "checked")
    assert (await direct_upload(api, alpha, data))[0] == 201
    status, transfer = await as_(api, alpha, "GET", f"/api/v1/blobs/{digest}/url")
    assert status == 200
    assert await store_call("GET", str(transfer["url"])) == (200, data)
    assert (await received(api), await blob_bytes(api, "checked")) == before, "not received, not read back either"


async def test_the_store_refuses_other_bytes_than_the_digest_an_upload_url_is_signed_with(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    promised = b"what was promised"
    claimed = hashlib.sha256(promised).hexdigest()
    status, transfer = await as_(api, alpha, "POST", f"/api/v1/blobs/{claimed}/uploads")
    assert status == 201, transfer
    url, checksum = str(transfer["url"]), signed_headers(transfer)
    assert checksum == {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(promised).digest()).decode()}
    other = {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(b"something else").digest()).decode()}
    assert (await store_call("PUT", url, b"something else", checksum))[0] == 400, "the store hashes the body"
    assert (await store_call("PUT", url, b"something else", other))[0] == 403, "another checksum breaks the signature"
    assert (await store_call("PUT", url, b"something else"))[0] == 403, "so does leaving it out"
    status, body = await as_(api, alpha, "POST", f"/api/v1/blobs/{claimed}/uploads/{transfer['upload']}")
    assert (status, body["code"]) == (404, "not_found"), "nothing was staged to commit"
    assert (await as_(api, alpha, "GET", f"/api/v1/blobs/{claimed}/url"))[0] == 404
    assert (await api.call("HEAD", f"/api/v1/blobs/{claimed}"))[0] == 404
    assert (await store_call("PUT", url, promised, checksum))[0] == 200, "the promised bytes go through the same URL"
    assert (await as_(api, alpha, "POST", f"/api/v1/blobs/{claimed}/uploads/{transfer['upload']}"))[0] == 201


async def test_no_url_is_issued_for_another_projects_blob_or_upload(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    beta = await token(api, "run", projects=("beta",))
    data = os.urandom(1024)
    digest = hashlib.sha256(data).hexdigest()
    assert (await direct_upload(api, alpha, data))[0] == 201
    status, body = await as_(api, beta, "GET", f"/api/v1/blobs/{digest}/url")
    assert (status, body["code"]) == (404, "not_found"), "as if it were not there"
    status, body = await as_(api, beta, "POST", f"/api/v1/blobs/{digest}/uploads?project=alpha")
    assert status == 403, body
    # An upload URL names one project's one digest: pointed at another key, the store refuses it.
    status, transfer = await as_(api, beta, "POST", f"/api/v1/blobs/{digest}/uploads")
    assert status == 201
    other = str(transfer["url"]).replace("/beta/", "/alpha/")
    assert other != transfer["url"]
    assert (await store_call("PUT", other, b"poison", signed_headers(transfer)))[0] == 403


async def test_a_direct_upload_is_the_asking_tokens_alone(api: Api) -> None:
    """A worker's token acts for one attempt: the upload it staged is its own to send, resume and commit; another
    token of the same project (another attempt) can do none of it."""
    first = await token(api, "run", projects=("alpha",))
    second = await token(api, "run", projects=("alpha",))
    data = os.urandom(2048)
    digest = hashlib.sha256(data).hexdigest()
    status, transfer = await as_(api, first, "POST", f"/api/v1/blobs/{digest}/uploads")
    assert status == 201, transfer
    assert (await store_call("PUT", str(transfer["url"]), data, signed_headers(transfer)))[0] == 200
    commit = f"/api/v1/blobs/{digest}/uploads/{transfer['upload']}"
    status, refused = await as_(api, second, "POST", commit)
    assert (status, refused["code"]) == (404, "not_found"), "another token finds no such upload"
    assert (await as_(api, first, "POST", commit))[0] == 201


async def test_a_presigned_url_is_refused_after_it_expires(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(1024)
    digest = hashlib.sha256(data).hexdigest()
    assert (await direct_upload(api, alpha, data))[0] == 201
    status, transfer = await as_(api, alpha, "GET", f"/api/v1/blobs/{digest}/url")
    assert (status, transfer["expires_in"]) == (200, URL_SECONDS)
    url = str(transfer["url"])
    assert await store_call("GET", url) == (200, data)

    async def refused() -> bool:
        return (await store_call("GET", url))[0] == 403

    await eventually_async(refused, within=URL_SECONDS + 10)


async def test_a_directory_store_offers_no_direct_transfers(tmp_path_factory: pytest.TempPathFactory) -> None:
    with gateway_process(tmp_path_factory.mktemp("local")) as local:
        async with admin_api(local) as api:
            status, body = await api.call("POST", f"/api/v1/blobs/{'a' * 64}/uploads")
            assert (status, body["code"]) == (409, "no_direct_transfer")
            status, body = await api.call("GET", f"/api/v1/blobs/{'a' * 64}/url")
            assert (status, body["code"]) == (409, "no_direct_transfer")
