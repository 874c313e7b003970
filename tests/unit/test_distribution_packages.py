"""Packages Flyte 2's distribution brings along, which its users' programs import without declaring them
(`aiofiles`, `async_lru`, `httpx`): they are our runtime dependencies too, so such programs run unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

import flyte

pytestmark = pytest.mark.timeout(60)

env = flyte.TaskEnvironment("distribution_packages")


@env.task
async def uses_them(path: str) -> str:
    import aiofiles
    import httpx
    from async_lru import alru_cache

    calls = 0

    @alru_cache(maxsize=8)
    async def shout(word: str) -> str:
        nonlocal calls
        calls += 1
        return word.upper()

    async with aiofiles.open(path) as handle:
        word = (await handle.read()).strip()
    first, again = await shout(word), await shout(word)
    # A request answered in-process: no network needed to show the client works.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=f"{request.url.path} ok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://service.invalid") as client:
        answer = (await client.get("/ping")).text
    return f"{first} {again} {calls} {answer}"


def test_a_task_imports_the_packages_flyte2_users_expect(tmp_path: Path) -> None:
    word = tmp_path / "word.txt"
    word.write_text("hello\n")
    run = flyte.with_runcontext(mode="local").run(uses_them, path=str(word))
    assert run.outputs() == ("HELLO HELLO 1 /ping ok",)
