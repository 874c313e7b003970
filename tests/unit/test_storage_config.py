"""`flyte.storage`'s configuration objects: what they give obstore, what they refuse, what they keep out of logs."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import flyte.storage
from flyte.storage._config import configure, settings_for


def test_s3_maps_onto_obstore_settings() -> None:
    s3 = flyte.storage.S3(endpoint="https://s3.example.com", access_key_id="AK", secret_access_key="SK", region="r1")
    assert s3.store_config() == {
        "endpoint": "https://s3.example.com",
        "access_key_id": "AK",
        "secret_access_key": "SK",
        "region": "r1",
    }
    assert "SK" not in repr(s3)
    assert flyte.storage.S3(addressing_style="virtual").store_config() == {"virtual_hosted_style_request": True}
    # Nothing set: nothing given, so obstore reads the environment as the gateway's blob store does.
    assert flyte.storage.S3().store_config() == {}


def test_plain_http_only_to_this_machine() -> None:
    assert flyte.storage.S3(endpoint="http://127.0.0.1:9000").client_options() == {"allow_http": True}
    with pytest.raises(ValueError, match="plain http on a remote host"):
        flyte.storage.S3(endpoint="http://s3.example.com").client_options()


def test_values_are_checked_and_normalised() -> None:
    assert flyte.storage.Storage(backoff=2).backoff == datetime.timedelta(seconds=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries"):
        flyte.storage.S3(retries=-1)
    with pytest.raises(TypeError, match="S3, GCS or ABFS"):
        configure("s3")  # type: ignore[arg-type]


def test_auto_reads_flyte2_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_AWS_ENDPOINT", "https://minio.example.com")
    monkeypatch.setenv("FLYTE_AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("FLYTE_STORAGE_RETRIES", "5")
    s3 = flyte.storage.S3.auto(region="r2")
    assert (s3.endpoint, s3.access_key_id, s3.region, s3.retries) == ("https://minio.example.com", "AK", "r2", 5)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    assert flyte.storage.ABFS.auto().store_config() == {"account_name": "acct"}


def test_the_configured_kind_applies_to_its_schemes_only() -> None:
    gcs = flyte.storage.GCS(retries=1)
    configure(gcs)
    try:
        assert settings_for("gs") is gcs
        assert isinstance(settings_for("s3"), flyte.storage.S3)
    finally:
        configure(None)


async def test_local_paths_work_without_a_store(tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("local")
    copied = await flyte.storage.put(str(source), str(tmp_path / "b.txt"))
    assert await flyte.storage.exists(copied)
    assert b"".join([c async for c in flyte.storage.get_stream(copied)]) == b"local"
    with pytest.raises(ValueError, match="s3://"):
        await flyte.storage.exists("ftp://host/x")
