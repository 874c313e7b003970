"""Flyte 2's small API items in local mode: Backoff and Timeout spellings, task options, devices, pod templates,
logging and root_dir in init_from_config, current project/domain, and a dict given for a pydantic-model input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest

import flyte
import flyte._cache
import flyte._config as config

env = flyte.TaskEnvironment("flyte2_small", pod_template=flyte.PodTemplate(labels={"team": "ml"}))


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@env.task
async def norm1(p: Point) -> int:
    return abs(p.x) + abs(p.y)


@env.task
async def norm_of_dict(x: int) -> int:
    return await norm1({"x": x, "y": -2})  # type: ignore[arg-type]


@env.task(entrypoint=True, timeout=flyte.Timeout(max_queued_time=timedelta(minutes=5)))
async def where_am_i() -> str:
    flyte.logger.info("running in %s/%s", flyte.current_project(), flyte.current_domain())
    return f"{flyte.current_project()}/{flyte.current_domain()}"


@env.task(retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=timedelta(milliseconds=10))))
async def flaky(key: str) -> int:
    tc = flyte.ctx()
    assert tc is not None
    if tc.attempt == 1:
        raise RuntimeError(f"first attempt of {key} fails")
    return tc.attempt


def test_backoff_takes_timedeltas() -> None:
    constant = flyte.Backoff(base=timedelta(seconds=10), factor=1.0, cap=None)
    assert constant.delay(1) == constant.delay(7) == 10.0
    assert constant.compute_delay(0) == timedelta(seconds=10)
    growing = flyte.Backoff(base=timedelta(seconds=1), factor=2.0, cap=timedelta(seconds=5))
    assert [growing.compute_delay(n).total_seconds() for n in range(4)] == [1.0, 2.0, 4.0, 5.0]
    assert growing.to_dict() == {"base": 1.0, "factor": 2.0, "cap": 5.0}
    with pytest.raises(ValueError, match="cap=None needs factor=1"):
        flyte.Backoff(base=timedelta(seconds=1), factor=2.0, cap=None)


def test_retry_with_a_timedelta_backoff_runs() -> None:
    run = flyte.run(flaky, "k")
    assert run.outputs()[0] == 2


def test_timeout_with_only_a_queue_limit() -> None:
    timeout = flyte.Timeout(max_queued_time=60)
    assert timeout.max_runtime is None
    assert timeout.max_runtime_seconds is None
    assert timeout.max_queued_seconds == 60.0
    with pytest.raises(ValueError, match="max_runtime, max_queued_time or both"):
        flyte.Timeout()


def test_entrypoint_task_is_a_task_template_and_sees_its_project() -> None:
    assert isinstance(where_am_i, flyte.TaskTemplate)
    assert where_am_i.settings.entrypoint is True
    run = flyte.with_runcontext(project="team-a", domain="staging").run(where_am_i)
    assert run.outputs()[0] == "team-a/staging"


def test_outside_a_task_project_and_domain_come_from_the_config() -> None:
    flyte.init(project="p1", domain="production")
    assert (flyte.current_project(), flyte.current_domain()) == ("p1", "production")


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    yield
    flyte.logger.setLevel(logging.NOTSET)
    flyte.system_logger.setLevel(logging.NOTSET)


@pytest.mark.usefixtures("restore_log_levels")
def test_init_from_config_sets_log_level_and_root_dir(tmp_path: Path) -> None:
    flyte.init_from_config(root_dir=tmp_path, log_level=logging.DEBUG)
    assert config.current_config().root_dir == tmp_path.resolve()
    assert flyte.logger.level == logging.DEBUG
    assert flyte.system_logger.level == logging.DEBUG
    flyte.init_from_config(log_level="warning", project="other")
    assert flyte.logger.level == logging.WARNING
    assert flyte.current_project() == "other"
    with pytest.raises(ValueError, match="not a directory"):
        flyte.init_from_config(root_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="not a logging level"):
        flyte.init_from_config(log_level="chatty")


def test_device_helpers_match_flyte2() -> None:
    a100 = flyte.GPU("A100", 2)
    assert a100 == flyte.Device(quantity=2, device_class="GPU", device="A100")
    resources = flyte.Resources(gpu=flyte.GPU("A100", 1, partition="1g.5gb"))
    assert (resources.gpu_type, resources.gpu_count) == ("A100", 1)
    assert resources.to_dict()["gpu"] == {"class": "GPU", "type": "A100", "count": 1, "partition": "1g.5gb"}
    assert flyte.TPU("V5P", "2x2x1").device_class == "TPU"
    assert flyte.Resources(gpu="A100 80G:2").gpu_type == "A100 80G"
    with pytest.raises(ValueError, match="GPU device"):
        flyte.GPU("A1000", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="GPU partition of T4"):
        flyte.GPU("T4", 1, partition="1g.5gb")
    with pytest.raises(ValueError, match="quantity"):
        flyte.Device(quantity=0, device_class="GPU")


def test_pod_template_is_carried_with_the_task() -> None:
    template = norm1.settings.pod_template
    assert template is not None
    assert template.to_dict() == {
        "pod_spec": None,
        "primary_container_name": "primary",
        "labels": {"team": "ml"},
        "annotations": {},
    }
    with pytest.raises(ValueError, match="labels"):
        flyte.PodTemplate(labels={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(NotImplementedError, match="named cluster PodTemplates"):
        env.task(pod_template="gpu-template")(lambda: None)


def test_a_dict_for_a_pydantic_input_is_validated_into_the_model() -> None:
    assert flyte.run(norm1, {"x": -3, "y": 4}).outputs()[0] == 7  # type: ignore[arg-type]
    assert flyte.run(norm_of_dict, 5).outputs()[0] == 7
    with pytest.raises(flyte.errors.ValueEncodingError, match="input 'p'"):
        flyte.run(norm1, {"y": 1})  # type: ignore[arg-type]


def test_links_on_a_task_say_they_are_not_implemented_and_triggers_are_checked() -> None:
    with pytest.raises(NotImplementedError, match="issue 20"):
        env.task(links=("docs",))(lambda: None)
    with pytest.raises(ValueError, match=r"triggers= takes flyte.Trigger values, not 'nightly'"):
        env.task(triggers=("nightly",))(lambda: None)


class PinnedPolicy:
    """A cache policy whose version is whatever the test pins (as a git-hash policy would be)."""

    def __init__(self, version: str):
        self.version = version

    def get_version(self, salt: str, params: flyte._cache.VersionParameters) -> str:
        assert params.func is not None
        return f"{salt}:{params.func.__name__}:{self.version}"


CALLS: list[int] = []


def _counted(x: int) -> int:
    CALLS.append(x)
    return x * 2


def test_cache_takes_flyte2_aliases_serialize_and_policies() -> None:
    assert flyte.Cache("enable").behavior == "auto"
    assert flyte.Cache("off").behavior == "disable"
    assert flyte.Cache("auto", serialize=True).serialize is True
    assert isinstance(PinnedPolicy("v1"), flyte.CachePolicy)
    with pytest.raises(ValueError, match="policies"):
        flyte.Cache("auto", policies=["not a policy"])  # type: ignore[list-item]

    cached_env = flyte.TaskEnvironment("flyte2_cache_policies")
    v1 = cached_env.task(cache=flyte.Cache("auto", policies=[PinnedPolicy("v1")]))(_counted)
    assert flyte.run(v1, 3).outputs()[0] == 6
    assert flyte.run(v1, 3).outputs()[0] == 6
    assert CALLS == [3], "the second run was answered from the cache"
    v2 = v1.override(cache=flyte.Cache("auto", policies=PinnedPolicy("v2")))
    assert flyte.run(v2, 3).outputs()[0] == 6
    assert CALLS == [3, 3], "another policy version is another cache entry"


def test_task_environment_takes_flyte2_arguments() -> None:
    assert flyte.TaskEnvironment("flyte2_no_image", image=None).image == "auto"
    with pytest.raises(NotImplementedError, match="plugin_config"):
        flyte.TaskEnvironment("flyte2_plugin", plugin_config={"kind": "spark"})
    with pytest.raises(NotImplementedError, match="from_task"):
        flyte.TaskEnvironment.from_task("flyte2_from_task", norm1)


@pytest.mark.usefixtures("restore_log_levels")
def test_with_runcontext_takes_flyte2_settings() -> None:
    context = flyte.with_runcontext(
        name="flyte2-settings",
        copy_style="loaded_modules",
        service_account="runner",
        annotations={"team": "ml"},
        interruptible=True,
        log_level=logging.INFO,
        log_format="console",
    )
    assert flyte.logger.level == logging.INFO
    assert context.run(norm1, {"x": 2}).outputs()[0] == 2  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="dry_run"):
        flyte.with_runcontext(dry_run=True)
    with pytest.raises(TypeError, match="no_such_setting"):
        flyte.with_runcontext(no_such_setting=1)


@env.task
async def square(x: int) -> int:
    return x * x


@env.task
async def grouped_squares(n: int) -> list[int]:
    return [r async for r in flyte.map.aio(square, range(n), group_name="squares", concurrency=2)]


def test_map_takes_a_group_name() -> None:
    run = flyte.run(grouped_squares, 3)
    assert run.outputs()[0] == [0, 1, 4]
    groups = {record.group for record in run._state.actions.values() if record.task.endswith(".square")}
    assert groups == {"squares"}


def test_retry_strategy_without_backoff_retries_at_once() -> None:
    strategy = flyte.RetryStrategy(count=2, backoff=None)  # type: ignore[arg-type]
    assert strategy.backoff.delay(1) == 0.0
    assert strategy.backoff.delay(5) == 0.0
