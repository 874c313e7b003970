"""The object store down mid-transfer: the gateway answers 503 `blob_store_unavailable` within seconds, the SDK's
blob transfer retries through the outage (a fresh presigned URL each time), and once the store is back the
upload lands and reads back intact. Against a real gateway process and a real S3 server that is killed and
restarted on the same port and data."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import GatewayProcess
from s3_server import S3Server
from waiting import assert_eventually

from flyte._client import GatewayBlobs

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def gateway(tmp_path: Path, s3_fresh: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayProcess]:
    for name, value in s3_fresh.env().items():
        monkeypatch.setenv(name, value)
    extra = ["--blobs", f"s3://{s3_fresh.bucket}/outage"]
    process = GatewayProcess("memory", tmp_path / "gateway", extra_args=extra).start()
    try:
        yield process
    finally:
        process.stop()


def test_an_upload_during_a_store_outage_lands_once_the_store_is_back(
    tmp_path: Path, gateway: GatewayProcess, s3_fresh: S3Server
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    blobs = GatewayBlobs(gateway.endpoint, gateway.token, "alpha")
    s3_fresh.stop()
    outcome: list[object] = []
    upload = threading.Thread(target=lambda: outcome.append(_try(lambda: blobs.put_file(path))), daemon=True)
    upload.start()
    # The client goes back for a fresh URL after each refused PUT: a second URL issued means it is retrying.
    assert_eventually(lambda: _upload_urls_issued(gateway) >= 2, timeout=30, interval=0.2)
    assert not outcome, "still retrying while the store is down"
    s3_fresh.start()
    upload.join(timeout=90)
    assert outcome == [f"blob:{hashlib.sha256(data).hexdigest()}"]
    assert blobs.get(str(outcome[0])) == data


def _upload_urls_issued(gateway: GatewayProcess) -> int:
    with urllib.request.urlopen(f"{gateway.endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flyte_gateway_requests_total") and 'method="POST"' in line and '/uploads"' in line
    )


def _try(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except Exception as error:  # the test asserts on what the thread ended with
        return error
