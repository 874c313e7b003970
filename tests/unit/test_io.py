"""Tests for `flyte.io` (File, Dir) and the local blob store behind them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from flyte._paths import blob_dir
from flyte.io import Dir, File
from flyte.io import _blobs as blobs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLYTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path / "home"


def _tree(root: Path) -> Path:
    files = {
        "b.txt": b"bee",
        "a/z.txt": b"zed",
        "a/b.txt": b"a-bee",
        "c/d/e.txt": b"deep",
        "A.txt": b"upper",
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty").mkdir()
    return root


def _relative(d: Dir, f: File) -> str:
    root = blobs.uri_to_path(d.path)
    return blobs.uri_to_path(f.path).relative_to(root).as_posix()


async def test_file_round_trip_through_json(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    payload = os.urandom(200_000)
    source.write_bytes(payload)

    original = await File.from_local(source)
    assert original.path.startswith("file://")
    assert original.name == "data.bin"
    assert original.hash == hashlib.sha256(payload).hexdigest()
    assert blobs.uri_to_path(original.path).is_relative_to(home / "blobs")

    decoded = File.model_validate_json(original.model_dump_json())
    assert decoded == original
    async with decoded.open() as fh:
        assert fh.read() == payload
    async with decoded.open() as fh:
        # Flyte 2 code awaits reads; the value must then be plain bytes.
        data = await fh.read()
        assert type(data) is bytes
        assert data == payload
    assert await decoded.exists()


async def test_upload_is_a_copy(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("first")
    f = await File.from_local(str(source))
    source.write_text("second")
    with f.open_sync("r") as fh:
        assert fh.read() == "first"


def test_file_sync_api(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"hello")
    f = File.from_local_sync(source)
    assert f.exists_sync()
    assert f.local_path == str(blobs.uri_to_path(f.path))

    downloaded = Path(f.download_sync())
    assert downloaded.name == "in.txt"
    assert downloaded.read_bytes() == b"hello"
    assert downloaded != blobs.uri_to_path(f.path)

    into_dir = tmp_path / "target-dir"
    into_dir.mkdir()
    assert Path(f.download_sync(into_dir)) == into_dir / "in.txt"
    explicit = tmp_path / "x" / "renamed.txt"
    assert f.download_sync(explicit) == str(explicit)
    assert explicit.read_bytes() == b"hello"


async def test_async_download(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"payload")
    f = await File.from_local(source)
    target = tmp_path / "out.txt"
    assert await f.download(target) == str(target)
    assert target.read_bytes() == b"payload"


async def test_content_addressing(home: Path, tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = tmp_path / "one" / "same.txt"
    second = tmp_path / "two" / "same.txt"
    renamed = tmp_path / "two" / "other.txt"
    different = tmp_path / "one" / "diff.txt"
    for path in (first, second, renamed):
        path.write_bytes(b"identical")
    different.write_bytes(b"not identical")

    a = await File.from_local(first)
    b = await File.from_local(second)
    c = await File.from_local(renamed)
    d = await File.from_local(different)
    assert a.path == b.path
    digest = hashlib.sha256(b"identical").hexdigest()
    assert blobs.uri_to_path(a.path) == home / "blobs" / digest / "same.txt"
    assert blobs.uri_to_path(c.path).parent == blobs.uri_to_path(a.path).parent
    assert d.path != a.path
    # No temporary files left behind by the atomic copy.
    assert sorted(p.name for p in (home / "blobs" / digest).iterdir()) == ["other.txt", "same.txt"]


async def test_missing_blob_is_reported_with_its_uri(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "gone.txt"
    source.write_bytes(b"soon gone")
    f = await File.from_local(source)
    blobs.uri_to_path(f.path).unlink()

    assert not await f.exists()
    with pytest.raises(FileNotFoundError, match=f.path):
        async with f.open() as fh:
            fh.read()
    with pytest.raises(FileNotFoundError, match=f.path):
        await f.download()
    with pytest.raises(FileNotFoundError, match=f.path), f.open_sync():
        pass
    with pytest.raises(FileNotFoundError, match=f.path):
        blobs.get_bytes(f.path)


def test_missing_local_source(home: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        File.from_local_sync(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        Dir.from_local_sync(tmp_path / "nothing-here")


async def test_new_remote_write_then_read(home: Path) -> None:
    f = File.new_remote(name="result.bin")
    assert f.name == "result.bin"
    assert not await f.exists()
    async with f.open("wb") as fh:
        fh.write(b"part one, ")
        await fh.write(b"part two")

    decoded = File.model_validate_json(f.model_dump_json())
    assert await decoded.exists()
    async with decoded.open() as fh:
        assert fh.read() == b"part one, part two"

    other = File.new_remote()
    assert other.path != f.path
    with other.open_sync("w") as fh:
        fh.write("text é")
    with other.open_sync("r") as fh:
        assert fh.read() == "text é"


async def test_content_addressed_blobs_cannot_be_written(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "shared.txt"
    source.write_bytes(b"shared by everyone")
    f = await File.from_local(source)
    with pytest.raises(PermissionError, match="new_remote"):
        async with f.open("wb") as fh:
            fh.write(b"corrupted")
    with pytest.raises(PermissionError), f.open_sync("ab"):
        pass
    assert blobs.uri_to_path(f.path).read_bytes() == b"shared by everyone"


async def test_from_local_to_a_destination(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"placed")
    destination = tmp_path / "dest" / "placed.txt"
    f = await File.from_local(source, remote_destination=destination.as_uri())
    assert blobs.uri_to_path(f.path) == destination
    assert f.name == "placed.txt"
    assert destination.read_bytes() == b"placed"
    with pytest.raises(ValueError, match="s3:// is not supported by the local blob store yet"):
        await File.from_local(source, remote_destination="s3://bucket/key")


async def test_other_schemes_are_rejected_clearly(home: Path) -> None:
    f = File.from_existing_remote("s3://bucket/path/key.csv")
    assert f.name == "key.csv"
    assert f.local_path is None
    message = "s3:// is not supported by the local blob store yet"
    with pytest.raises(ValueError, match=message):
        async with f.open() as fh:
            fh.read()
    with pytest.raises(ValueError, match=message):
        await f.exists()
    with pytest.raises(ValueError, match=message):
        blobs.get_bytes("s3://bucket/blob")
    with pytest.raises(ValueError, match="gs://"):
        await Dir.from_existing_remote("gs://bucket/dir").download()


def test_existing_local_paths_and_odd_names(home: Path, tmp_path: Path) -> None:
    odd = tmp_path / "a b#c%20?.txt"
    odd.write_bytes(b"odd")
    by_path = File.from_existing_remote(str(odd))
    assert by_path.name == odd.name
    with by_path.open_sync() as fh:
        assert fh.read() == b"odd"

    uploaded = File.from_local_sync(odd)
    assert "#" not in uploaded.path
    assert blobs.uri_to_path(uploaded.path).name == odd.name
    with File.model_validate_json(uploaded.model_dump_json()).open_sync() as fh:
        assert fh.read() == b"odd"


def test_bytes_round_trip(home: Path) -> None:
    payload = os.urandom(70 * 1024)
    uri = blobs.put_bytes(payload)
    assert uri == blobs.put_bytes(payload)
    assert uri != blobs.put_bytes(payload + b"!")
    assert blobs.uri_to_path(uri).is_relative_to(blob_dir())
    assert blobs.get_bytes(uri) == payload


def test_blob_names_must_be_plain(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="invalid blob name"):
            blobs.put_file(source, bad)


async def test_dir_round_trip_and_walk_order(home: Path, tmp_path: Path) -> None:
    source = _tree(tmp_path / "tree")
    d = await Dir.from_local(source)
    assert d.name == "tree"
    assert blobs.uri_to_path(d.path).parent == home / "blobs" / "dirs"

    decoded = Dir.model_validate_json(d.model_dump_json())
    assert decoded == d
    assert await decoded.exists()

    walked = [f async for f in decoded.walk()]
    assert [_relative(decoded, f) for f in walked] == ["A.txt", "a/b.txt", "a/z.txt", "b.txt", "c/d/e.txt"]
    assert [f.name for f in walked] == ["A.txt", "b.txt", "z.txt", "b.txt", "e.txt"]
    contents = []
    for f in walked:
        async with f.open() as fh:
            contents.append(fh.read())
    assert contents == [b"upper", b"a-bee", b"zed", b"bee", b"deep"]
    assert [_relative(d, f) for f in d.walk_sync()] == [_relative(d, f) for f in walked]

    top = [_relative(d, f) for f in d.walk_sync(recursive=False)]
    assert top == ["A.txt", "b.txt"]
    assert [_relative(d, f) for f in await d.list_files()] == top
    assert [_relative(d, f) for f in d.list_files_sync()] == top


async def test_dir_get_file(home: Path, tmp_path: Path) -> None:
    d = await Dir.from_local(_tree(tmp_path / "tree"))
    found = await d.get_file("a/z.txt")
    assert found is not None
    with found.open_sync() as fh:
        assert fh.read() == b"zed"
    assert d.get_file_sync("missing.txt") is None
    assert d.get_file_sync("../../../../etc/passwd") is None


async def test_dir_content_addressing(home: Path, tmp_path: Path) -> None:
    first = await Dir.from_local(_tree(tmp_path / "one"))
    second = await Dir.from_local(_tree(tmp_path / "two"))
    assert first.path == second.path
    assert first.name == "one"
    assert second.name == "two"

    changed = _tree(tmp_path / "three")
    (changed / "a" / "z.txt").write_bytes(b"ZED")
    assert (await Dir.from_local(changed)).path != first.path

    renamed = _tree(tmp_path / "four")
    (renamed / "b.txt").rename(renamed / "bb.txt")
    assert (await Dir.from_local(renamed)).path != first.path
    # Staging directories do not linger.
    assert not [p for p in (home / "blobs" / "dirs").iterdir() if p.name.startswith(".tmp-")]


async def test_dir_download(home: Path, tmp_path: Path) -> None:
    d = Dir.from_local_sync(_tree(tmp_path / "tree"))

    local = Path(await d.download())
    assert local.name == "tree"
    assert (local / "c" / "d" / "e.txt").read_bytes() == b"deep"

    chosen = tmp_path / "chosen"
    assert d.download_sync(chosen) == str(chosen)
    got = sorted(p.relative_to(chosen).as_posix() for p in chosen.rglob("*") if p.is_file())
    assert got == ["A.txt", "a/b.txt", "a/z.txt", "b.txt", "c/d/e.txt"]


async def test_dir_to_a_destination_and_missing_dir(home: Path, tmp_path: Path) -> None:
    destination = tmp_path / "placed"
    d = await Dir.from_local(_tree(tmp_path / "tree"), remote_destination=str(destination))
    assert blobs.uri_to_path(d.path) == destination
    assert (destination / "a" / "b.txt").read_bytes() == b"a-bee"

    missing = Dir.from_existing_remote((tmp_path / "absent").as_uri())
    assert missing.name == "absent"
    assert not await missing.exists()
    with pytest.raises(FileNotFoundError, match=missing.path):
        [f async for f in missing.walk()]
    with pytest.raises(FileNotFoundError, match=missing.path):
        missing.download_sync()
