"""`flyte.storage` on object-store URIs, against a real S3-compatible server (SeaweedFS): configured by
`flyte.init(storage=S3(...))` or by the environment alone (as the gateway's blob store is); files, directories,
streams, existence; and from inside a task, as a Flyte 2 program calls it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from s3_server import S3Server

import flyte
import flyte.storage
from flyte.cli._s3_local import REGION
from flyte.storage._config import configure

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def configured(s3_server: S3Server) -> Iterator[str]:
    """The store configured by `flyte.init(storage=...)`; yields a fresh URI prefix in the bucket."""
    storage = flyte.storage.S3(
        endpoint=s3_server.endpoint,
        access_key_id=s3_server.local.access_key,
        secret_access_key=s3_server.local.secret_key,
        region=REGION,
    )
    flyte.init(storage=storage)
    try:
        yield f"s3://{s3_server.bucket}/storage-{uuid.uuid4().hex[:8]}"
    finally:
        configure(None)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_a_file_goes_to_the_store_and_back(configured: str, s3_server: S3Server, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights" * 1000)
    uri = f"{configured}/models/model.bin"
    assert not await flyte.storage.exists(uri)
    assert await flyte.storage.put(str(source), uri) == uri
    assert await flyte.storage.exists(uri)
    assert await flyte.storage.exists(f"{configured}/models")  # a prefix with objects under it
    assert s3_server.keys(configured.split("/", 3)[3]) == [f"{configured.split('/', 3)[3]}/models/model.bin"]
    copy = await flyte.storage.get(uri, str(tmp_path / "copy.bin"))
    assert _read(copy) == b"weights" * 1000
    fresh = await flyte.storage.get(uri)
    assert Path(fresh).name == "model.bin"
    assert _read(fresh) == b"weights" * 1000


async def test_directories_copy_recursively(configured: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    with pytest.raises(IsADirectoryError):
        await flyte.storage.put(str(tree), f"{configured}/tree")
    await flyte.storage.put(str(tree), f"{configured}/tree", recursive=True)
    back = await flyte.storage.get(f"{configured}/tree", str(tmp_path / "back"), recursive=True)
    assert _files(Path(back)) == {"a.txt": b"a", "sub/b.txt": b"b"}
    with pytest.raises(FileNotFoundError):
        await flyte.storage.get(f"{configured}/nothing-here", str(tmp_path / "none"), recursive=True)


async def test_streams_in_and_out(configured: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk {i};".encode()

    uri = await flyte.storage.put_stream(chunks(), to_path=f"{configured}/stream.txt")
    received = [piece async for piece in flyte.storage.get_stream(uri, chunk_size=4)]
    assert b"".join(received) == b"chunk 0;chunk 1;chunk 2;"
    await flyte.storage.put_stream(b"whole", to_path=f"{configured}/bytes.txt")
    assert b"".join([p async for p in flyte.storage.get_stream(f"{configured}/bytes.txt")]) == b"whole"


async def test_the_environment_alone_configures_the_store(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    configure(None)
    uri = f"s3://{s3_server.bucket}/env-{uuid.uuid4().hex[:8]}/x.txt"
    await flyte.storage.put_stream(b"from the environment", to_path=uri)
    assert await flyte.storage.exists(uri)
    assert _read(await flyte.storage.get(uri, str(tmp_path / "x.txt"))) == b"from the environment"


def test_a_task_run_locally_uses_the_store(configured: str, tmp_path: Path) -> None:
    env = flyte.TaskEnvironment("storage_demo")

    @env.task
    async def roundtrip(uri: str) -> str:
        await flyte.storage.put_stream(b"written in a task", to_path=uri)
        return b"".join([piece async for piece in flyte.storage.get_stream(uri)]).decode()

    run = flyte.with_runcontext(mode="local").run(roundtrip, uri=f"{configured}/task.txt")
    assert run.outputs() == ("written in a task",)
    assert flyte.storage.exists_sync(f"{configured}/task.txt")
