"""Tests for `flyte._config`: config file lookup, validation, env overrides and `write_config`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flyte import _config
from flyte._config import (
    Config,
    current_config,
    endpoints_of,
    find_config_file,
    init,
    init_from_config,
    is_remote,
    load_config,
    normalize_endpoint,
    write_config,
)

ENV_VARS = ("FLYTECTL_CONFIG", "FLYTE_ENDPOINT", "FLYTE_PROJECT", "FLYTE_DOMAIN", "FLYTE_API_KEY")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = <tmp>/repo/sub/work inside a git checkout at <tmp>/repo, with HOME and FLYTE_HOME isolated."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("FLYTE_HOME", str(tmp_path / "flyte-home"))
    (tmp_path / "user").mkdir()
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    work = tmp_path / "repo" / "sub" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(_config, "_current", None)
    return tmp_path


def _write(path: Path, project: str, endpoint: str = "dns:///flyte.example.com:443") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"admin": {"endpoint": endpoint}, "task": {"project": project}}))
    return path


def _locations(root: Path) -> list[Path]:
    work = root / "repo" / "sub" / "work"
    return [
        work / "config.yaml",
        work / ".flyte" / "config.yaml",
        root / "repo" / ".flyte" / "config.yaml",
        root / "elsewhere" / "flytectl.yaml",
        root / "user" / ".flyte" / "config.yaml",
    ]


@pytest.mark.parametrize("winner", range(5))
def test_lookup_order_first_existing_location_wins(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, winner: int
) -> None:
    locations = _locations(workspace)
    monkeypatch.setenv("FLYTECTL_CONFIG", str(locations[3]))
    # Every location from the winner on exists; only the winner may be read.
    for index in range(winner, len(locations)):
        _write(locations[index], project=f"p{index}")

    assert find_config_file() == locations[winner]
    init_from_config()
    config = current_config()
    assert config.project == f"p{winner}"
    assert config.source == locations[winner]
    assert config.endpoint == "https://flyte.example.com:443"
    assert is_remote()


def test_git_root_found_through_a_dot_git_file(workspace: Path) -> None:
    # Worktrees and submodules have a `.git` file, not a directory.
    repo = workspace / "repo"
    (repo / ".git").rmdir()
    (repo / ".git").write_text("gitdir: /somewhere/else\n")
    _write(repo / ".flyte" / "config.yaml", project="from-git-root")

    init_from_config()
    assert current_config().project == "from-git-root"


def test_no_config_means_local_mode(workspace: Path) -> None:
    # FLYTE_HOME moves local state only; a config there must not be picked up.
    _write(workspace / "flyte-home" / "config.yaml", project="ignored")

    init_from_config()
    assert current_config() == Config()
    assert current_config().endpoint is None
    assert not is_remote()
    assert current_config().project == "default"
    assert current_config().domain == "development"


def test_current_config_before_init_is_local(workspace: Path) -> None:
    assert current_config() == Config()
    assert not is_remote()


def test_explicit_path_is_used_and_missing_path_is_named(workspace: Path) -> None:
    _write(Path("config.yaml"), project="searched")
    explicit = _write(workspace / "explicit.yaml", project="explicit")

    init_from_config(str(explicit))
    assert current_config().project == "explicit"

    missing = workspace / "nope" / "config.yaml"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        init_from_config(missing)


def test_file_without_endpoint_is_local_but_keeps_project(workspace: Path) -> None:
    Path("config.yaml").write_text("task:\n  project: p\n  domain: staging\n")
    init_from_config()
    config = current_config()
    assert not config.is_remote
    assert (config.project, config.domain) == ("p", "staging")


@pytest.mark.parametrize(
    ("endpoint", "insecure", "expected"),
    [
        ("dns:///flyte.example.com:443", False, "https://flyte.example.com:443"),
        ("dns:///localhost:30080", True, "http://localhost:30080"),
        ("localhost:30080", True, "http://localhost:30080"),
        ("flyte.example.com:443", False, "https://flyte.example.com:443"),
        ("http://localhost:8080", False, "http://localhost:8080"),
        ("https://flyte.example.com", True, "https://flyte.example.com"),
        ("https://flyte.example.com/", False, "https://flyte.example.com"),
        # The replicas of one gateway, tried in turn.
        ("gw-1:443, dns:///gw-2:443,,https://gw-3/", False, "https://gw-1:443,https://gw-2:443,https://gw-3"),
    ],
)
def test_endpoint_normalisation(workspace: Path, endpoint: str, insecure: bool, expected: str) -> None:
    assert normalize_endpoint(endpoint, insecure) == expected
    Path("config.yaml").write_text(yaml.safe_dump({"admin": {"endpoint": endpoint, "insecure": insecure}}))
    init_from_config()
    assert current_config().endpoint == expected
    assert current_config().insecure is insecure


def test_several_endpoints_are_tried_in_order(workspace: Path) -> None:
    assert endpoints_of(normalize_endpoint("a:1,b:2", insecure=True)) == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError, match="endpoint is empty"):
        normalize_endpoint(" , ")
    with pytest.raises(ValueError, match="grpc://"):
        normalize_endpoint("http://a:1,grpc://b:2")


def test_unsupported_endpoint_scheme_is_rejected(workspace: Path) -> None:
    with pytest.raises(ValueError, match="grpc://"):
        normalize_endpoint("grpc://host:1")
    Path("config.yaml").write_text("admin:\n  endpoint: grpc://host:1\n")
    with pytest.raises(ValueError, match=r"config\.yaml.*admin\.endpoint"):
        init_from_config()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("admin:\n  endpoint: dns:///h:1\n  insecure: maybe\n", "admin.insecure"),
        ("admin: not-a-mapping\n", "admin"),
        ("admin:\n  endpoint: [a, b]\n", "admin.endpoint"),
        ("task:\n  project: {x: 1}\n", "task.project"),
    ],
)
def test_invalid_file_names_file_and_field(workspace: Path, text: str, field: str) -> None:
    path = Path("config.yaml")
    path.write_text(text)
    with pytest.raises(ValueError, match=r"config\.yaml") as caught:
        init_from_config()
    assert f"{field}:" in str(caught.value)
    assert str(path.absolute()) in str(caught.value)
    # A failed load leaves the previous config in place.
    assert current_config() == Config()


def test_invalid_yaml_and_non_mapping_documents(workspace: Path) -> None:
    path = workspace / "bad.yaml"
    path.write_text("admin: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*mapping"):
        load_config(path)


def test_unknown_sections_and_keys_are_ignored(workspace: Path) -> None:
    Path("config.yaml").write_text(
        "admin:\n  endpoint: dns:///h:443\n  authType: Pkce\n  clientId: abc\n"
        "logger:\n  level: 5\n  show-source: true\n"
        "storage:\n  type: stow\n"
        "task:\n  project: p\n"
    )
    init_from_config()
    assert current_config().endpoint == "https://h:443"
    assert current_config().project == "p"


def test_empty_file_and_empty_sections_are_local(workspace: Path) -> None:
    Path("config.yaml").write_text("")
    init_from_config()
    assert not is_remote()
    Path("config.yaml").write_text("admin:\ntask:\n")
    init_from_config()
    assert not is_remote()
    assert current_config().project == "default"


def test_env_overrides_apply_on_top_of_the_file(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("config.yaml").write_text(
        "admin:\n  endpoint: dns:///file-host:443\n  insecure: true\n  api_key: from-file\n"
        "task:\n  project: file-project\n  domain: file-domain\n"
    )
    monkeypatch.setenv("FLYTE_ENDPOINT", "dns:///env-host:8080")
    monkeypatch.setenv("FLYTE_PROJECT", "env-project")
    monkeypatch.setenv("FLYTE_DOMAIN", "env-domain")
    monkeypatch.setenv("FLYTE_API_KEY", "env-key")

    init_from_config()
    config = current_config()
    # The file's `insecure` still decides the scheme of an env endpoint.
    assert config.endpoint == "http://env-host:8080"
    assert (config.project, config.domain, config.api_key) == ("env-project", "env-domain", "env-key")
    assert config.source == Path.cwd() / "config.yaml"


def test_env_alone_makes_a_remote_config(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_ENDPOINT", "https://control.example.com")
    monkeypatch.setenv("FLYTE_PROJECT", "p")
    init_from_config()
    assert is_remote()
    assert current_config().endpoint == "https://control.example.com"
    assert current_config().project == "p"
    assert current_config().domain == "development"


def test_empty_env_values_count_as_unset(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_ENDPOINT", "")
    monkeypatch.setenv("FLYTE_PROJECT", "")
    init_from_config()
    assert current_config() == Config()


def test_init_sets_config_and_env_only_fills_missing_arguments(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init(endpoint="dns:///h:443", project="p", domain="d", api_key="k")
    assert current_config() == Config(endpoint="https://h:443", project="p", domain="d", api_key="k")

    monkeypatch.setenv("FLYTE_ENDPOINT", "http://env:1")
    monkeypatch.setenv("FLYTE_PROJECT", "env-project")
    init(endpoint="localhost:30080", insecure=True)
    config = current_config()
    assert config.endpoint == "http://localhost:30080"
    assert config.project == "env-project"
    assert config.domain == "development"

    init()
    assert current_config().endpoint == "http://env:1"


def test_init_without_arguments_is_local(workspace: Path) -> None:
    init(endpoint="dns:///h:443")
    assert is_remote()
    init()
    assert not is_remote()
    assert current_config() == Config()


def test_api_key_is_not_in_repr() -> None:
    config = Config(endpoint="https://h", api_key="top-secret")
    assert "top-secret" not in repr(config)
    assert config.is_remote


def test_write_config_round_trip(workspace: Path) -> None:
    target = workspace / "out" / "nested" / "config.yaml"
    written = write_config(target, "dns:///localhost:30080", "proj", "staging", True)
    assert written == target
    assert yaml.safe_load(target.read_text()) == {
        "admin": {"endpoint": "dns:///localhost:30080", "insecure": True},
        "task": {"project": "proj", "domain": "staging"},
    }

    init_from_config(target)
    assert current_config() == Config(
        endpoint="http://localhost:30080", insecure=True, project="proj", domain="staging", source=target
    )


def test_write_config_without_project_or_domain_uses_defaults(workspace: Path) -> None:
    target = write_config(workspace / "c.yaml", "flyte.example.com:443", None, None, False)
    assert "task" not in yaml.safe_load(target.read_text())
    config = load_config(target)
    assert config.endpoint == "https://flyte.example.com:443"
    assert (config.project, config.domain) == ("default", "development")


def test_write_config_refuses_to_overwrite_unless_forced(workspace: Path) -> None:
    target = write_config(workspace / "c.yaml", "dns:///first:443", "one", None, False)
    before = target.read_text()

    with pytest.raises(FileExistsError, match=r"c\.yaml.*already exists"):
        write_config(target, "dns:///second:443", "two", None, False)
    assert target.read_text() == before

    write_config(target, "dns:///second:443", "two", None, False, force=True)
    assert load_config(target).endpoint == "https://second:443"
    assert load_config(target).project == "two"


def test_write_config_rejects_an_unloadable_endpoint(workspace: Path) -> None:
    target = workspace / "c.yaml"
    with pytest.raises(ValueError, match="ftp://"):
        write_config(target, "ftp://h", None, None, False)
    assert not target.exists()


async def test_concurrent_attempts_of_a_pool_worker_each_see_their_own_token(workspace: Path) -> None:
    """A pool worker runs several attempts at once, each in its own task: each sees its own token, and code outside
    every attempt (a thread a task started itself) sees the last one set."""
    import asyncio

    from flyte._config import use_attempt_config

    started = asyncio.Event()
    seen: dict[str, str | None] = {}

    async def attempt(token: str, project: str) -> None:
        use_attempt_config("http://127.0.0.1:9", token, project, "development")
        if token == "first":
            await started.wait()  # the second attempt configures meanwhile
        else:
            started.set()
        config = current_config()
        seen[token] = config.api_key
        assert (config.endpoint, config.project) == ("http://127.0.0.1:9", project)

    await asyncio.gather(attempt("first", "p1"), attempt("second", "p2"))
    assert seen == {"first": "first", "second": "second"}
    assert current_config().api_key == "second"  # this context ran no attempt: the process's


async def test_a_task_that_calls_init_itself_gets_what_it_asked_for(workspace: Path) -> None:
    import asyncio

    from flyte._config import use_attempt_config

    async def attempt() -> Config:
        use_attempt_config("http://127.0.0.1:9", "token", "p1", "development")
        init(endpoint="http://127.0.0.1:10", project="other", api_key="theirs")
        return current_config()

    config = await asyncio.create_task(attempt())
    assert (config.endpoint, config.project, config.api_key) == ("http://127.0.0.1:10", "other", "theirs")
