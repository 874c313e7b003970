"""Presigned S3 uploads that the store checks: a PUT URL signed with the sha256 of the bytes it takes, and multipart
uploads with a URL per part (so a large upload goes from the client to the store in parallel parts, each checked,
and a broken one resumes with the parts that are missing).

obstore signs a URL for a method and a key, never with query parameters or headers, and S3's multipart calls are all
query parameters of the object's URL (`?uploads`, `?partNumber=N&uploadId=U`, `?uploadId=U`). So the object's URL
comes from obstore (its style and encoding as obstore addresses the store) and its query-string signature (AWS
Signature Version 4, `UNSIGNED-PAYLOAD`) is made here, with the credentials from the usual environment. Signing the
`x-amz-checksum-sha256` header into a URL makes the client send exactly that header (any other value breaks the
signature), and the store refuses a body whose sha256 is not it (`BadDigest`): the check happens in the store, and
the bytes never come to the gateway to be hashed. The gateway makes the control calls itself (start, list the
parts, complete; a few hundred bytes each); the bytes only ever go client to store.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import html
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

import aiohttp

from flyte._wire import CHECKSUM_HEADER

PART_NUMBERS = range(1, 10_001)
"""S3's part numbers."""
_UPLOAD_ID = re.compile(r"<UploadId>([^<]+)</UploadId>")
_PART = re.compile(r"<Part>(.*?)</Part>", re.S)
_NUMBER = re.compile(r"<PartNumber>(\d+)</PartNumber>")
_ETAG = re.compile(r"<ETag>([^<]+)</ETag>")
MULTIPART_ID = re.compile(r"^[A-Za-z0-9._~+/=-]{1,1024}$")
"""What an S3 upload id may look like when a client hands one back."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str
    session_token: str | None = None

    @classmethod
    def from_environment(cls) -> Credentials | None:
        """The key pair of the environment (None: an instance role or another chain that only obstore reads)."""
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            return None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(access, secret, region, os.environ.get("AWS_SESSION_TOKEN"))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def presign(
    method: str,
    url: str,
    query: Mapping[str, str],
    credentials: Credentials,
    seconds: int,
    now: datetime.datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """`url` (an object's URL, its path already encoded) with `query`, signed for `method` for `seconds`; `headers`
    are signed too, so a request through the URL must carry them with exactly these values."""
    parts = urllib.parse.urlsplit(url)
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{when[:8]}/{credentials.region}/s3/aws4_request"
    signed = {"host": parts.netloc, **{name.lower(): value.strip() for name, value in (headers or {}).items()}}
    names = ";".join(sorted(signed))
    params = {
        **query,
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{credentials.access_key}/{scope}",
        "X-Amz-Date": when,
        "X-Amz-Expires": str(seconds),
        "X-Amz-SignedHeaders": names,
    }
    if credentials.session_token:
        params["X-Amz-Security-Token"] = credentials.session_token
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
    canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in sorted(signed))
    canonical = "\n".join([method, parts.path or "/", canonical_query, canonical_headers, names, "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", when, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials.secret_key).encode()
    for step in (when[:8], credentials.region, "s3", "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{canonical_query}&X-Amz-Signature={signature}"


class MultipartError(Exception):
    """The store refused a multipart call (the message is for the log, not for clients)."""


async def _call(method: str, url: str, body: bytes | None = None) -> str:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body) as response:
        text = await response.text()
        if response.status >= 300:
            raise MultipartError(f"{method} {url.split('?', 1)[0]}: {response.status} {text[:300]}")
        return text


async def start(url: str, credentials: Credentials, seconds: int) -> str:
    """Start a multipart upload of the object at `url`; returns the store's upload id."""
    found = _UPLOAD_ID.search(await _call("POST", presign("POST", url, {"uploads": ""}, credentials, seconds)))
    if found is None:
        raise MultipartError(f"no UploadId in the answer to starting an upload at {url}")
    return html.unescape(found.group(1))


def checksum_headers(sha256_base64: str) -> dict[str, str]:
    """The header a PUT carries so the store checks its bytes against `sha256_base64`."""
    return {CHECKSUM_HEADER: sha256_base64}


def part_url(url: str, upload_id: str, number: int, credentials: Credentials, seconds: int, sha256: str) -> str:
    """A part's PUT URL: the store takes only the part whose sha256 (base64) is `sha256`."""
    query = {"partNumber": str(number), "uploadId": upload_id}
    return presign("PUT", url, query, credentials, seconds, headers=checksum_headers(sha256))


async def parts(url: str, upload_id: str, credentials: Credentials, seconds: int) -> dict[int, str]:
    """The parts the store holds for the upload: number -> ETag."""
    text = await _call("GET", presign("GET", url, {"uploadId": upload_id}, credentials, seconds))
    held = {}
    for part in _PART.findall(text):
        number, etag = _NUMBER.search(part), _ETAG.search(part)
        if number is not None and etag is not None:
            held[int(number.group(1))] = html.unescape(etag.group(1))
    return held


async def complete(url: str, upload_id: str, held: Mapping[int, str], credentials: Credentials, seconds: int) -> None:
    """Join the parts, in order, into the object."""
    body = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(held[n])}</ETag></Part>" for n in sorted(held))
    document = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
    await _call("POST", presign("POST", url, {"uploadId": upload_id}, credentials, seconds), document)
