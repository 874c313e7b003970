"""The gateway's SigV4 query signing for S3's multipart calls (`gateway._s3_multipart.presign`), against the example
presigned URL in AWS's documentation (Authenticating Requests: Using Query Parameters)."""

from __future__ import annotations

import datetime

from gateway._s3_multipart import Credentials, presign

AWS_EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
WHEN = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


def test_the_signature_is_the_one_aws_documents() -> None:
    url = presign("GET", "https://examplebucket.s3.amazonaws.com/test.txt", {}, AWS_EXAMPLE, 86400, WHEN)
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_the_multipart_parameters_and_a_session_token_are_signed_too() -> None:
    with_token = Credentials(AWS_EXAMPLE.access_key, AWS_EXAMPLE.secret_key, "eu-west-1", "token/with+chars")
    url = presign("PUT", "http://127.0.0.1:9000/b/k", {"partNumber": "2", "uploadId": "u+1"}, with_token, 60, WHEN)
    assert "partNumber=2" in url
    assert "uploadId=u%2B1" in url
    assert "X-Amz-Security-Token=token%2Fwith%2Bchars" in url
    other = presign("PUT", "http://127.0.0.1:9000/b/k", {"partNumber": "3", "uploadId": "u+1"}, with_token, 60, WHEN)
    assert url.rsplit("=", 1)[1] != other.rsplit("=", 1)[1], "another part is another signature"


def test_a_checksum_header_is_signed_so_the_request_must_carry_exactly_it() -> None:
    plain = presign("PUT", "http://127.0.0.1:9000/b/k", {}, AWS_EXAMPLE, 60, WHEN)
    checked = presign(
        "PUT", "http://127.0.0.1:9000/b/k", {}, AWS_EXAMPLE, 60, WHEN, {"X-Amz-Checksum-SHA256": " abc= "}
    )
    assert "X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256" in checked
    other = presign("PUT", "http://127.0.0.1:9000/b/k", {}, AWS_EXAMPLE, 60, WHEN, {"x-amz-checksum-sha256": "abd="})
    signatures = {url.rsplit("=", 1)[1] for url in (plain, checked, other)}
    assert len(signatures) == 3, "the header's value is part of the signature"
