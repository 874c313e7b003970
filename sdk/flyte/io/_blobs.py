"""The local blob store: content-addressed copies of files, directories and large payloads.

Everything lives under `flyte._paths.blob_dir()` and is named by `file://` URIs, so a `File`, a `Dir` or an
out-of-line payload can cross a task boundary as a short string. Layout::

    <blob_dir>/<sha256>/<name>          put_file / put_bytes (same content, same directory)
    <blob_dir>/dirs/<digest>/...        put_dir (digest over the sorted (relative path, sha256) list)
    <blob_dir>/writable/<uuid>/<name>   new_writable_path: File.new_remote, filled in after creation

Writes go to a temporary name in the destination directory and are renamed into place, so a reader never
sees a half-written blob and concurrent writers of the same content are harmless.

In remote mode (a gateway is configured, or this code runs in a worker) a stored file is also uploaded to the
gateway's blob store and named `blob://<sha256>/<name>` (a directory: `blobdir://<sha256 of its manifest>`), so a
task on another cluster can read it: resolving such a URI fetches it into this machine's store once. Other
schemes (`s3://`) raise ValueError until an object-store backend exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, unquote

from flyte._paths import blob_dir

if TYPE_CHECKING:
    from flyte._codec import BlobBackend

__all__ = [
    "BYTES_BLOB_NAME",
    "copy_file_atomic",
    "file_sha256",
    "get_bytes",
    "is_content_addressed",
    "new_writable_path",
    "path_to_uri",
    "put_bytes",
    "put_dir",
    "put_file",
    "put_file_hashed",
    "tree_files",
    "uri_basename",
    "uri_to_path",
]

BYTES_BLOB_NAME = "payload"
"""The file name `put_bytes` stores a payload under, inside its content directory."""

_CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_DIRS = "dirs"
_WRITABLE = "writable"


def path_to_uri(path: Path) -> str:
    """`file://` + the absolute path, percent-encoded so names with `#`, `?` or `%` survive."""
    return "file://" + quote(Path(path).absolute().as_posix(), safe="/")


def uri_to_path(uri: str) -> Path:
    """The local path a `file://` URI (or a plain local path) names; a gateway blob is fetched here first.

    Raises ValueError for any other scheme, naming it, so callers see why an `s3://` File cannot be read.
    """
    if uri.startswith("blob://"):
        return _fetch_file(uri)
    if uri.startswith("blobdir://"):
        return _fetch_dir(uri)
    if uri.startswith("file://"):
        rest = uri[len("file://") :]
        if not rest.startswith("/"):
            # `file://host/path`: only the local machine is reachable from here.
            host, _, tail = rest.partition("/")
            if host not in ("", "localhost"):
                raise ValueError(f"file:// URI {uri!r} names host {host!r}; only local files are supported")
            rest = "/" + tail
        return Path(unquote(rest))
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ValueError(f"{scheme}:// is not supported by the local blob store yet: {uri}")
    return Path(uri).expanduser().absolute()


def uri_basename(uri: str) -> str:
    """The last path component of a URI of any scheme (used to name Files and Dirs)."""
    try:
        return uri_to_path(uri).name
    except ValueError:
        return uri.rstrip("/").rsplit("/", 1)[-1]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _atomic_writer(destination: Path) -> Iterator[BinaryIO]:
    """A handle on a temporary file beside `destination`, renamed onto it only if the block succeeds."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def copy_file_atomic(source: Path, destination: Path) -> None:
    """Copy `source` to `destination` so that no reader ever sees a partial file."""
    with Path(source).open("rb") as src, _atomic_writer(destination) as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"invalid blob name {name!r}: it must be a plain file name")


def put_file(local: Path, name: str) -> str:
    """Copy a local file into the store under its content hash; returns its `file://` URI."""
    return put_file_hashed(local, name)[0]


def put_file_hashed(local: Path, name: str) -> tuple[str, str]:
    """`put_file`, also returning the sha256 hex it computed (File keeps it as a cache key)."""
    _check_name(name)
    source = Path(local)
    if not source.is_file():
        if source.exists():
            raise IsADirectoryError(f"not a regular file: {source}")
        raise FileNotFoundError(f"no such file: {source}")
    digest = file_sha256(source)
    target = blob_dir() / digest / name
    if not target.exists():
        copy_file_atomic(source, target)
    gateway = _gateway()
    if gateway is not None:
        gateway.put_file(target)
        return f"blob://{digest}/{quote(name, safe='')}", digest
    return path_to_uri(target), digest


def tree_files(root: Path, *, recursive: bool = True) -> list[tuple[str, Path]]:
    """(relative posix path, path) of every file under root, sorted by relative path.

    Symlinked directories are not followed (a link loop would make the walk endless); symlinked files
    contribute their target's content. Empty directories carry no content and are not listed.
    """
    files: list[tuple[str, Path]] = []
    for directory, subdirs, names in os.walk(root):
        if not recursive:
            subdirs.clear()
        for name in names:
            path = Path(directory) / name
            if path.is_file():
                files.append((path.relative_to(root).as_posix(), path))
    files.sort(key=lambda item: item[0])
    return files


def put_dir(local: Path) -> str:
    """Copy a directory tree into the store under a digest of its contents; returns its `file://` URI."""
    source = Path(local)
    if not source.is_dir():
        if source.exists():
            raise NotADirectoryError(f"not a directory: {source}")
        raise FileNotFoundError(f"no such directory: {source}")
    files = tree_files(source)
    digest = hashlib.sha256()
    for relative, path in files:
        # NUL and newline cannot be confused with path or hex characters, so the encoding is unambiguous.
        digest.update(relative.encode("utf-8") + b"\0" + file_sha256(path).encode("ascii") + b"\n")
    parent = blob_dir() / _DIRS
    target = parent / digest.hexdigest()
    if not target.exists():
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-"))
        try:
            for relative, path in files:
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
            try:
                os.replace(staging, target)
            except OSError:
                # Another writer stored the same tree first; theirs is identical, keep it.
                if not target.is_dir():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    gateway = _gateway()
    if gateway is not None:
        manifest = [(relative, gateway.put(path.read_bytes()).removeprefix("blob:")) for relative, path in files]
        ref = gateway.put(json.dumps({"files": manifest}).encode())
        return "blobdir://" + ref.removeprefix("blob:")
    return path_to_uri(target)


def put_bytes(data: bytes) -> str:
    """Store a payload under its content hash; returns its `file://` URI."""
    target = blob_dir() / hashlib.sha256(data).hexdigest() / BYTES_BLOB_NAME
    if not target.exists():
        with _atomic_writer(target) as out:
            out.write(data)
    return path_to_uri(target)


def get_bytes(uri: str) -> bytes:
    """The payload a URI names; FileNotFoundError naming the URI if the blob is gone."""
    path = uri_to_path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"blob not found: {uri} (looked for {path})") from None


def new_writable_path(name: str) -> Path:
    """A fresh, not-yet-existing location for a blob whose content is written later."""
    _check_name(name)
    directory = blob_dir() / _WRITABLE / uuid.uuid4().hex
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def is_content_addressed(path: Path) -> bool:
    """Whether a path lies in the content-addressed part of the store, where writing would corrupt a blob."""
    root = blob_dir().resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root):
        return False
    relative = resolved.relative_to(root)
    return not (relative.parts and relative.parts[0] == _WRITABLE)


def _gateway() -> BlobBackend | None:
    """The gateway's blob store when this code runs in remote mode, else None (the local store is all there is)."""
    from flyte._codec import current_blob_backend
    from flyte._config import current_config

    backend = current_blob_backend()
    if backend is not None and backend.remote:
        return backend
    config = current_config()
    if config.endpoint is None:
        return None
    from flyte._client import GatewayBlobs

    return GatewayBlobs(config.endpoint, config.api_key, config.project)


def _checked_gateway(digest: str, uri: str) -> BlobBackend:
    if not _DIGEST.match(digest):
        raise ValueError(f"{uri!r} does not name a blob by its sha256")
    gateway = _gateway()
    if gateway is None:
        raise ValueError(f"{uri} is stored in a gateway, and no gateway is configured here")
    return gateway


def _gateway_bytes(digest: str, uri: str) -> bytes:
    gateway = _checked_gateway(digest, uri)
    try:
        data = gateway.get(f"blob:{digest}")
    except OSError as error:
        raise FileNotFoundError(f"blob not found: {uri} ({error})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{uri}: the gateway returned other content than its digest names")
    return data


def _fetch_file(uri: str) -> Path:
    digest, _, name = uri[len("blob://") :].partition("/")
    name = unquote(name) or BYTES_BLOB_NAME
    _check_name(name)
    target = blob_dir() / digest / name
    if not target.exists():
        _download(digest, uri, target)
    return target


def _download(digest: str, uri: str, target: Path) -> None:
    """Stream the blob to `target`, hashed on the way: renamed into place only if the bytes are the digest's."""
    from flyte._client import retry_transient

    gateway = _checked_gateway(digest, uri)
    with _atomic_writer(target) as out:
        hasher = hashlib.sha256()
        written = 0

        def write(chunk: bytes) -> None:
            nonlocal written
            out.write(chunk)
            hasher.update(chunk)
            written += len(chunk)

        def attempt() -> None:
            # A retried download resumes after the bytes an interrupted one wrote (hashed already, in order).
            gateway.download(f"blob:{digest}", write, offset=written)

        try:
            retry_transient(attempt)
        except OSError as error:
            raise FileNotFoundError(f"blob not found: {uri} ({error})") from None
        if hasher.hexdigest() != digest:
            raise ValueError(f"{uri}: the gateway returned other content than its digest names")


def _fetch_dir(uri: str) -> Path:
    digest = uri[len("blobdir://") :]
    target = blob_dir() / _DIRS / f"gateway-{digest}"
    if target.exists():
        return target
    manifest = json.loads(_gateway_bytes(digest, uri))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        for relative, file_digest in manifest["files"]:
            destination = (staging / relative).resolve()
            if not destination.is_relative_to(staging.resolve()):
                raise ValueError(f"{uri}: manifest entry {relative!r} leaves the directory")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(_gateway_bytes(file_digest, uri))
        with contextlib.suppress(OSError):
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
