"""Unit tests for the SDK's frozen value objects: validation, normalisation and derived values."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

import pytest

from flyte._cache import Cache, normalize_cache
from flyte._image import EnvVars, Image, PipPackages
from flyte._placement import Labels, Placement
from flyte._resources import Resources, parse_cpu, parse_quantity
from flyte._retry import Backoff, RetryStrategy, normalize_retries
from flyte._reusable import ReusePolicy
from flyte._secret import Secret, normalize_secrets
from flyte._timeout import Timeout, normalize_timeout

# --- the three errors the brief pins down exactly ---------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field", "value"),
    [
        (lambda: Resources(memory="1Gx"), "memory", "'1Gx'"),
        (lambda: ReusePolicy(replicas=0), "replicas", "0"),
        (lambda: Resources(cpu=-1), "cpu", "-1"),
    ],
)
def test_bad_value_error_names_class_field_and_value(build: Any, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        build()
    message = str(info.value)
    assert f"{field}={value}" in message
    assert message.split(":")[0] in {"Resources", "ReusePolicy"}


def test_memory_error_message_is_exact() -> None:
    with pytest.raises(ValueError, match="memory") as info:
        Resources(memory="1Gx")
    assert str(info.value) == "Resources: memory='1Gx' is not a quantity like '512Mi' or '2Gi'"


# --- Resources ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        ("1", 1),
        ("1Ki", 1024),
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1Ti", 2**40),
        ("1k", 1000),
        ("1K", 1000),
        ("1M", 10**6),
        ("1G", 10**9),
        ("1T", 10**12),
        ("1.5Gi", 3 * 2**29),
        (" 3Mi ", 3 * 2**20),
        ("0.0001", 1),
    ],
)
def test_parse_quantity(value: str | int, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["1Gx", "", "Gi", "-1Gi", "1 Gi", "1gi", "0", 0, -5, True, 1.5, None])
def test_parse_quantity_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=repr(value).replace(".", r"\.")):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2, 2.0), (0.5, 0.5), ("2", 2.0), ("1.5", 1.5), ("500m", 0.5), ("250m", 0.25), (" 1 ", 1.0)],
)
def test_parse_cpu(value: int | float | str, expected: float) -> None:
    assert parse_cpu(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [0, -1, "0", "0m", "-1", "1x", "", "m", float("nan"), float("inf"), True])
def test_parse_cpu_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"CPU amount|> 0|finite"):
        parse_cpu(value)


def test_resources_defaults_are_unset() -> None:
    res = Resources()
    assert (res.cpu_request, res.cpu_limit) == (None, None)
    assert (res.memory_request_bytes, res.memory_limit_bytes, res.disk_bytes) == (None, None, None)
    assert (res.gpu_type, res.gpu_count) == (None, 0)
    assert res.to_dict() == {}


def test_resources_scalar_amounts_mean_request_equals_limit() -> None:
    res = Resources(cpu="500m", memory="1Gi")
    assert res.cpu_request == res.cpu_limit == 0.5
    assert res.memory_request_bytes == res.memory_limit_bytes == 2**30


def test_resources_request_limit_pairs_are_normalised() -> None:
    res = Resources(cpu=["500m", 2], memory=[" 1Gi", "2Gi"])  # type: ignore[arg-type]
    assert res.cpu == ("500m", 2)
    assert res.memory == ("1Gi", "2Gi")
    assert (res.cpu_request, res.cpu_limit) == (0.5, 2.0)
    assert (res.memory_request_bytes, res.memory_limit_bytes) == (2**30, 2**31)
    assert hash(res) == hash(Resources(cpu=("500m", 2), memory=("1Gi", "2Gi")))


@pytest.mark.parametrize(
    ("gpu", "gpu_type", "count"),
    [(1, None, 1), (4, None, 4), ("T4", "T4", 1), ("A100:2", "A100", 2), ("nvidia-l4_x:8", "nvidia-l4_x", 8)],
)
def test_resources_gpu(gpu: int | str, gpu_type: str | None, count: int) -> None:
    res = Resources(gpu=gpu)
    assert (res.gpu_type, res.gpu_count) == (gpu_type, count)
    assert res.to_dict() == {"gpu": {"type": gpu_type, "count": count}}


def test_resources_disk_and_shm() -> None:
    res = Resources(disk="10Gi", shm=" auto ")
    assert res.shm == "auto"
    assert res.disk_bytes == 10 * 2**30
    assert res.shm_bytes is None
    assert Resources(shm="64Mi").shm_bytes == 64 * 2**20


def test_resources_to_dict_normalises_everything() -> None:
    res = Resources(cpu=("1", "2"), memory="512Mi", gpu="A100:2", disk="1G", shm="1Gi")
    assert res.to_dict() == {
        "cpu": {"request": 1.0, "limit": 2.0},
        "memory": {"request": 512 * 2**20, "limit": 512 * 2**20},
        "gpu": {"type": "A100", "count": 2},
        "disk": 10**9,
        "shm": 2**30,
    }


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cpu": 0}, "cpu=0"),
        ({"cpu": "abc"}, "cpu='abc'"),
        ({"cpu": ("2", "1")}, "limit must be >= the request"),
        ({"cpu": ("1", "x")}, "limit 'x'"),
        ({"cpu": (1, 2, 3)}, "(request, limit) pair"),
        ({"cpu": True}, "cpu=True"),
        ({"memory": ("2Gi", "1Gi")}, "limit must be >= the request"),
        ({"memory": 1.5}, "memory=1.5"),
        ({"memory": "-1Gi"}, "memory='-1Gi'"),
        ({"gpu": 0}, "gpu=0"),
        ({"gpu": "A100:0"}, "gpu='A100:0'"),
        ({"gpu": "A100:"}, "gpu='A100:'"),
        ({"gpu": ":2"}, "gpu=':2'"),
        ({"gpu": "2"}, "gpu='2'"),
        ({"gpu": "A 100"}, "gpu='A 100'"),
        ({"gpu": True}, "gpu=True"),
        ({"disk": "lots"}, "disk='lots'"),
        ({"shm": "Auto"}, "shm='Auto'"),
        ({"shm": 0}, "shm=0"),
    ],
)
def test_resources_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Resources: ") as info:
        Resources(**kwargs)
    assert fragment in str(info.value)


def test_resources_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Resources().cpu = 1  # type: ignore[misc]


# --- ReusePolicy -------------------------------------------------------------------------------------------


def test_reuse_policy_defaults() -> None:
    policy = ReusePolicy()
    assert (policy.min_replicas, policy.max_replicas, policy.concurrency) == (2, 2, 1)
    assert policy.idle_ttl is None
    assert policy.scaledown_ttl is None


@pytest.mark.parametrize(("replicas", "bounds"), [(1, (1, 1)), ((0, 3), (0, 3)), ([2, 5], (2, 5)), ((1, 1), (1, 1))])
def test_reuse_policy_replicas(replicas: Any, bounds: tuple[int, int]) -> None:
    policy = ReusePolicy(replicas=replicas)
    assert (policy.min_replicas, policy.max_replicas) == bounds
    assert hash(policy) == hash(ReusePolicy(replicas=replicas if isinstance(replicas, int) else bounds))


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_reuse_policy_ttls_become_timedeltas(ttl: Any, expected: timedelta) -> None:
    policy = ReusePolicy(idle_ttl=ttl, scaledown_ttl=ttl)
    assert policy.idle_ttl == expected
    assert policy.scaledown_ttl == expected
    assert policy.idle_ttl_seconds == expected.total_seconds()


def test_reuse_policy_to_dict() -> None:
    assert ReusePolicy(replicas=(0, 4), concurrency=8, idle_ttl=60).to_dict() == {
        "min_replicas": 0,
        "max_replicas": 4,
        "concurrency": 8,
        "idle_ttl": 60.0,
        "scaledown_ttl": None,
    }


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"replicas": 0}, "replicas=0"),
        ({"replicas": -1}, "replicas=-1"),
        ({"replicas": True}, "replicas=True"),
        ({"replicas": (3, 2)}, "replicas=(3, 2)"),
        ({"replicas": (0, 0)}, "replicas=(0, 0)"),
        ({"replicas": (-1, 2)}, "replicas=(-1, 2)"),
        ({"replicas": (1, 2, 3)}, "replicas=(1, 2, 3)"),
        ({"replicas": "2"}, "replicas='2'"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"concurrency": 1.0}, "concurrency=1.0"),
        ({"idle_ttl": 0}, "idle_ttl=0"),
        ({"idle_ttl": timedelta(0)}, "idle_ttl=datetime.timedelta(0)"),
        ({"scaledown_ttl": -5}, "scaledown_ttl=-5"),
        ({"scaledown_ttl": "1m"}, "scaledown_ttl='1m'"),
    ],
)
def test_reuse_policy_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^ReusePolicy: ") as info:
        ReusePolicy(**kwargs)
    assert fragment in str(info.value)


# --- Cache -------------------------------------------------------------------------------------------------


def test_cache_defaults() -> None:
    cache = Cache()
    assert cache.behavior == "auto"
    assert cache.is_enabled
    assert (cache.version_override, cache.ignored_inputs, cache.salt) == (None, (), "")


def test_cache_normalises_inputs_and_version() -> None:
    cache = Cache("override", version_override=" v1 ", ignored_inputs=["a", "b", "a"], salt="s")
    assert cache.version_override == "v1"
    assert cache.ignored_inputs == ("a", "b")
    assert Cache(ignored_inputs="x").ignored_inputs == ("x",)
    assert Cache(version_override="  ").version_override is None
    assert not Cache("disable").is_enabled


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"behavior": "always"}, "behavior='always'"),
        ({"behavior": "override"}, "version_override=None"),
        ({"behavior": "override", "version_override": " "}, "version_override=' '"),
        ({"version_override": 3}, "version_override=3"),
        ({"ignored_inputs": ["ok", "not ok"]}, "'not ok'"),
        ({"ignored_inputs": 5}, "ignored_inputs=5"),
        ({"salt": None}, "salt=None"),
    ],
)
def test_cache_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Cache: ") as info:
        Cache(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("value", "behavior"),
    [
        (True, "auto"),
        ("auto", "auto"),
        (False, "disable"),
        (None, "disable"),
        ("disable", "disable"),
        # Flyte 2's aliases.
        ("yes", "auto"),
        ("Enable", "auto"),
        ("off", "disable"),
    ],
)
def test_normalize_cache(value: Any, behavior: str) -> None:
    assert normalize_cache(value) == Cache(behavior)  # type: ignore[arg-type]


def test_normalize_cache_passes_cache_through() -> None:
    cache = Cache("override", version_override="v2")
    assert normalize_cache(cache) is cache


@pytest.mark.parametrize(("value", "fragment"), [("override", "needs a version"), ("maybe", "'maybe'"), (1, "=1")])
def test_normalize_cache_rejects(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^cache=") as info:
        normalize_cache(value)
    assert fragment in str(info.value)


# --- Image -------------------------------------------------------------------------------------------------


def test_image_from_base_is_ready_to_run() -> None:
    image = Image.from_base("ghcr.io/org/app:1.0")
    assert image.uri == "ghcr.io/org/app:1.0"
    assert not image.needs_build
    assert image.layers == ()


@pytest.mark.parametrize(
    "uri",
    [
        "python:3.11-slim",
        "ubuntu",
        "library/ubuntu:22.04",
        "localhost:5000/team/app",
        "registry.example.com:443/a/b/c:v1.2.3",
        "ghcr.io/org/app@sha256:" + "a" * 64,
        "ghcr.io/org/app:1.0@sha256:" + "0f" * 32,
    ],
)
def test_image_from_base_accepts_references(uri: str) -> None:
    assert Image.from_base(uri).uri == uri


@pytest.mark.parametrize(
    "uri",
    ["", " ", "python 3.11", "Python:3.11", "app:", "ghcr.io/org/app@sha256:xyz", "a//b", "app:tag:two"],
)
def test_image_from_base_rejects_non_references(uri: str) -> None:
    with pytest.raises(ValueError, match=r"^Image: uri=") as info:
        Image.from_base(uri)
    assert repr(uri) in str(info.value)


def test_image_from_debian_base_and_auto() -> None:
    import sys

    here = (sys.version_info.major, sys.version_info.minor)
    assert Image.auto() == Image.from_debian_base() == Image(python_version=here)
    image = Image.from_debian_base(python_version=(3, 12), name="team/app")
    assert (image.python_version, image.name, image.uri) == ((3, 12), "team/app", None)
    assert image.needs_build


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"python_version": (2, 7)}, "python_version=(2, 7)"),
        ({"python_version": (3,)}, "python_version=(3,)"),
        ({"name": "Team App"}, "name='Team App'"),
    ],
)
def test_image_from_debian_base_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Image: ") as info:
        Image.from_debian_base(**kwargs)
    assert fragment in str(info.value)


def test_image_builders_return_new_images_and_keep_order() -> None:
    base = Image.from_debian_base(python_version=(3, 11))
    built = (
        base.with_apt_packages("git", "curl=7.88.1-10")
        .with_pip_packages("numpy", " pandas>=2 ", index_url="https://pypi.example/simple")
        .with_requirements(PurePosixPath("reqs/requirements.txt"))
        .with_env_vars({"B": "2", "A": "1"})
        .with_source_folder("src", dst="/app")
        .with_commands("echo hi")
    )
    assert base.layers == ()
    assert [layer.kind for layer in built.layers] == [
        "apt_packages",
        "pip_packages",
        "requirements",
        "env_vars",
        "source_folder",
        "commands",
    ]
    pip = built.layers[1]
    assert isinstance(pip, PipPackages)
    assert pip.packages == ("numpy", "pandas>=2")
    assert built.layers[3] == EnvVars((("B", "2"), ("A", "1")))
    assert built.to_dict()["layers"][2] == {"kind": "requirements", "path": "reqs/requirements.txt"}  # type: ignore[index]


def test_image_layer_on_a_ready_image_moves_uri_to_base() -> None:
    image = Image.from_base("python:3.11-slim").with_pip_packages("numpy")
    assert image.uri is None
    assert image.base_uri == "python:3.11-slim"
    assert image.needs_build


def test_image_identifier_is_deterministic_and_spec_sensitive() -> None:
    one = Image.from_debian_base(python_version=(3, 11)).with_pip_packages("numpy")
    same = Image.from_debian_base(python_version=(3, 11)).with_pip_packages("numpy")
    other = Image.from_debian_base(python_version=(3, 11)).with_pip_packages("scipy")
    assert one.identifier == same.identifier
    assert one.identifier != other.identifier
    assert len(one.identifier) == 16
    assert int(one.identifier, 16) >= 0
    assert hash(one) == hash(same)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda img: img.with_pip_packages(), "PipPackages: packages=()"),
        (lambda img: img.with_pip_packages("a\nb"), "'a\\nb'"),
        (lambda img: img.with_apt_packages("Bad Name"), "'Bad Name'"),
        (lambda img: img.with_env_vars({"1X": "v"}), "'1X'"),
        (lambda img: img.with_env_vars({}), "EnvVars: variables=()"),
        (lambda img: img.with_requirements(""), "Requirements: path=''"),
        (lambda img: img.with_source_folder("src", dst=""), "SourceFolder: dst=''"),
        (lambda img: img.with_commands(""), "Commands: commands=('',)"),
    ],
)
def test_image_builders_reject(build: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^\w+: ") as info:
        build(Image.auto())
    assert fragment in str(info.value)


def test_image_with_uri_and_layers_is_rejected() -> None:
    layer = PipPackages(("numpy",))
    with pytest.raises(ValueError, match=r"^Image: uri='python:3.11'"):
        Image(uri="python:3.11", layers=(layer,))


# --- Secret ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "env_var"),
    [("api-key", "API_KEY"), ("db.password", "DB_PASSWORD"), ("TOKEN", "TOKEN"), ("1pw", "_1PW")],
)
def test_secret_env_var_is_derived_from_key(key: str, env_var: str) -> None:
    assert Secret(key).env_var == env_var


def test_secret_explicit_env_var_and_mount() -> None:
    secret = Secret("k", group="g", mount=PurePosixPath("/etc/secrets"), as_env_var="MY_K")
    assert secret.env_var == "MY_K"
    assert secret.mount == "/etc/secrets"
    assert secret.to_dict() == {"key": "k", "group": "g", "mount": "/etc/secrets", "env_var": "MY_K"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"key": ""}, "key=''"),
        ({"key": "a b"}, "key='a b'"),
        ({"key": "k", "group": ""}, "group=''"),
        ({"key": "k", "as_env_var": "1ABC"}, "as_env_var='1ABC'"),
        ({"key": "k", "as_env_var": "A-B"}, "as_env_var='A-B'"),
        ({"key": "k", "mount": "relative/dir"}, "mount='relative/dir'"),
    ],
)
def test_secret_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Secret: ") as info:
        Secret(**kwargs)
    assert fragment in str(info.value)


def test_normalize_secrets() -> None:
    assert normalize_secrets(None) == ()
    assert normalize_secrets("a") == (Secret("a"),)
    assert normalize_secrets(Secret("b")) == (Secret("b"),)
    assert normalize_secrets(["a", Secret("b"), "a"]) == (Secret("a"), Secret("b"))


@pytest.mark.parametrize(("value", "fragment"), [(["a-b", "a_b"], "$A_B"), ([1], "1 is not"), (5, "secrets=5")])
def test_normalize_secrets_rejects(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^secrets=") as info:
        normalize_secrets(value)
    assert fragment in str(info.value)


# --- Placement ---------------------------------------------------------------------------------------------


def test_placement_normalises_and_stays_hashable() -> None:
    placement = Placement(regions="us-east-1", clusters=["b", "a", "b"], labels={"zone": "z1", "gpu": "yes"})
    assert placement.regions == ("us-east-1",)
    assert placement.clusters == ("b", "a")
    assert dict(placement.labels) == {"gpu": "yes", "zone": "z1"}
    assert placement.labels == {"zone": "z1", "gpu": "yes"}
    assert hash(placement) == hash(
        Placement(regions=("us-east-1",), clusters=("b", "a"), labels={"gpu": "yes", "zone": "z1"})
    )
    assert placement.to_dict() == {
        "regions": ["us-east-1"],
        "clouds": [],
        "clusters": ["b", "a"],
        "labels": {"gpu": "yes", "zone": "z1"},
        "avoid": [],
        "spread": False,
        "prefer_warm": True,
    }


def test_placement_labels_are_read_only() -> None:
    labels = Placement(labels={"a": "1"}).labels
    assert isinstance(labels, Labels)
    with pytest.raises(TypeError):
        labels["b"] = "2"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"regions": [""]}, "regions=['']"),
        ({"clouds": ["a b"]}, "'a b'"),
        ({"clusters": {"a"}}, "clusters={'a'}"),
        ({"clusters": ["a"], "avoid": "a"}, "both name 'a'"),
        ({"labels": {"bad key": "v"}}, "'bad key'"),
        ({"labels": {"k": "bad value"}}, "'bad value'"),
        ({"labels": ["k"]}, "labels=['k']"),
        ({"spread": 1}, "spread=1"),
    ],
)
def test_placement_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Placement: ") as info:
        Placement(**kwargs)
    assert fragment in str(info.value)


def test_placement_merge_narrows() -> None:
    env = Placement(regions=("us", "eu"), clusters=("c1", "c2", "c3"), labels={"a": "1", "b": "1"}, avoid="c9")
    task = Placement(regions=("eu", "ap", "us"), avoid="c1", labels={"b": "2"}, spread=True, prefer_warm=False)
    merged = env.merge(task)
    assert merged.regions == ("eu", "us")
    assert merged.clouds == ()
    assert merged.clusters == ("c2", "c3")
    assert merged.avoid == ("c9", "c1")
    assert dict(merged.labels) == {"a": "1", "b": "2"}
    assert (merged.spread, merged.prefer_warm) == (True, False)


def test_placement_merge_with_empty_side_keeps_the_other() -> None:
    env = Placement(clouds=("aws",))
    assert Placement().merge(env).clouds == ("aws",)
    assert env.merge(Placement()).clouds == ("aws",)


@pytest.mark.parametrize(
    ("outer", "inner", "fragment"),
    [
        (Placement(regions="us"), Placement(regions="eu"), "nothing in common"),
        (Placement(clusters="c1"), Placement(avoid="c1"), "in avoid"),
    ],
)
def test_placement_merge_rejects_an_empty_result(outer: Placement, inner: Placement, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Placement.merge: ") as info:
        outer.merge(inner)
    assert fragment in str(info.value)


# --- Retries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (100_000, 60.0)])
def test_backoff_delay(attempt: int, delay: float) -> None:
    assert Backoff().delay(attempt) == delay


def test_backoff_constant_and_zero() -> None:
    assert Backoff(base=3, factor=1, cap=3).delay(50) == 3.0
    assert Backoff(base=0, factor=10).delay(10_000) == 0.0
    assert Backoff(base=1, factor=2, cap=10).base == 1.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base": -1}, "base=-1"),
        ({"factor": 0.5}, "factor=0.5"),
        ({"base": 10, "cap": 5}, "cap=5"),
        ({"cap": float("inf")}, "cap=inf"),
        ({"base": True}, "base=True"),
    ],
)
def test_backoff_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Backoff: ") as info:
        Backoff(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_backoff_delay_rejects_bad_attempts(attempt: Any) -> None:
    with pytest.raises(ValueError, match="attempt="):
        Backoff().delay(attempt)


def test_retry_strategy() -> None:
    strategy = RetryStrategy(count=3, backoff=Backoff(base=0.5))
    assert strategy.to_dict() == {"count": 3, "backoff": {"base": 0.5, "factor": 2.0, "cap": 60.0}}
    assert RetryStrategy().backoff == Backoff()
    with pytest.raises(ValueError, match=r"^RetryStrategy: count=-1"):
        RetryStrategy(count=-1)
    with pytest.raises(ValueError, match=r"^RetryStrategy: backoff=2"):
        RetryStrategy(count=1, backoff=2)  # type: ignore[arg-type]


def test_normalize_retries() -> None:
    assert normalize_retries(None) == RetryStrategy(0)
    assert normalize_retries(3) == RetryStrategy(3)
    strategy = RetryStrategy(2, Backoff(cap=5))
    assert normalize_retries(strategy) is strategy


@pytest.mark.parametrize("value", [True, False, -1, 1.5, "3"])
def test_normalize_retries_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=f"^retries={value!r}"):
        normalize_retries(value)


# --- Timeout -----------------------------------------------------------------------------------------------


def test_timeout_normalises_to_timedeltas() -> None:
    timeout = Timeout(90, max_queued_time=timedelta(minutes=2))
    assert timeout.max_runtime == timedelta(seconds=90)
    assert timeout.max_queued_time == timedelta(minutes=2)
    assert timeout.to_dict() == {"max_runtime": 90.0, "max_queued_time": 120.0}
    assert Timeout(1.5).max_queued_time is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_runtime": 0}, "max_runtime=0"),
        ({"max_runtime": -3}, "max_runtime=-3"),
        ({"max_runtime": True}, "max_runtime=True"),
        ({"max_runtime": "1h"}, "max_runtime='1h'"),
        ({"max_runtime": float("nan")}, "max_runtime=nan"),
        ({"max_runtime": 1, "max_queued_time": timedelta(seconds=-1)}, "max_queued_time="),
    ],
)
def test_timeout_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=r"^Timeout: ") as info:
        Timeout(**kwargs)
    assert fragment in str(info.value)


def test_normalize_timeout() -> None:
    assert normalize_timeout(None) is None
    assert normalize_timeout(60) == Timeout(timedelta(minutes=1))
    assert normalize_timeout(timedelta(hours=1)) == Timeout(3600)
    timeout = Timeout(5, 10)
    assert normalize_timeout(timeout) is timeout


@pytest.mark.parametrize("value", [True, 0, -1, "60"])
def test_normalize_timeout_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=f"^timeout={value!r}"):
        normalize_timeout(value)
