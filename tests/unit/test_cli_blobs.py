"""`--blobs` on `flyte gateway serve` and `flyte rig up`: a bad combination is a usage error (exit 2) naming the
option, before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flyte.cli import main


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["gateway", "serve", "--blobs-endpoint", "http://127.0.0.1:9000"], "--blobs-endpoint is for an object store"),
        (
            ["gateway", "serve", "--blobs", "s3://bucket/p", "--blobs-endpoint", "http://storage.example.com:9000"],
            "plain http on a remote host",
        ),
        (["gateway", "serve", "--blobs", "file:///tmp/x"], "an object store is s3://, gs:// or az://"),
        (["gateway", "serve", "--blobs", "s3://"], "an object store is s3://, gs:// or az://"),
        (["gateway", "serve", "--blobs", "ftp://host/dir"], "an object store is s3://, gs:// or az://"),
        (["rig", "up", "--s3", "--blobs", "s3://bucket/p"], "--s3 starts a local S3 server"),
    ],
)
def test_a_bad_blob_store_option_is_a_usage_error(args: list[str], complaint: str) -> None:
    if args[0] == "gateway":
        args = [*args, "--store", "memory", "--port", "0", "--no-write-config"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output
    assert "Traceback" not in result.output
