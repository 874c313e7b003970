"""`TaskEnvironment`: the image, resources and policies a group of tasks share, and the `@env.task` decorator.

Every environment defined in a process is registered by name, so a deployment can collect the environments it
depends on and, in local mode, `remote.Task.get("env.task")` can find a task defined in this process.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, overload

from ._cache import Cache, CacheBehavior, normalize_cache
from ._image import Image
from ._placement import Placement
from ._pod import PodTemplate
from ._resources import Resources
from ._retry import RetryStrategy, normalize_retries
from ._reusable import ReusePolicy
from ._secret import Secret, normalize_secrets
from ._task import DEFAULT_MAX_INLINE_IO_BYTES, TaskSettings, TaskTemplate
from ._timeout import Timeout, normalize_timeout
from ._trigger import normalize_triggers, trigger_specs
from ._unimplemented import not_implemented

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
_ENVIRONMENTS: dict[str, TaskEnvironment] = {}

CacheRequest = Cache | CacheBehavior | bool | None
SecretRequest = str | Secret | list[str | Secret] | None


class Environment(abc.ABC):  # noqa: B024 (a marker base: Flyte 2's common base of environments)
    """The base of environments; `isinstance(env, flyte.Environment)` holds for every `TaskEnvironment`."""


def registered_environments() -> Mapping[str, TaskEnvironment]:
    """Every environment defined in this process, by name (the latest definition wins)."""
    return _ENVIRONMENTS


@dataclasses.dataclass
class TaskEnvironment:
    """Tasks that share an image, resources, secrets, a reuse policy and a placement."""

    name: str
    image: str | Image | None = "auto"
    resources: Resources | None = None
    env_vars: dict[str, str] | None = None
    secrets: SecretRequest = None
    cache: CacheRequest = "disable"
    reusable: ReusePolicy | None = None
    depends_on: list[TaskEnvironment] = dataclasses.field(default_factory=list)
    description: str | None = None
    queue: str | None = None
    interruptible: bool = False
    placement: Placement | None = None
    """Ours beyond Flyte: where this environment's actions may run."""
    pod_template: PodTemplate | str | None = None
    """A Kubernetes pod template (Flyte 2); carried with each task's settings, not applied by a backend yet."""
    plugin_config: Any = None
    """Flyte 2's configuration of a custom task type; plugins are not supported, so it must stay None."""
    _tasks: dict[str, TaskTemplate[..., Any]] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"TaskEnvironment: name={self.name!r} must be snake_case or kebab-case "
                "(lower-case letters and digits separated by '_' or '-')"
            )
        if self.image is None:
            self.image = "auto"
        if self.plugin_config is not None:
            raise not_implemented("TaskEnvironment(plugin_config=)", "task plugins (custom task types)")
        if isinstance(self.image, str) and self.image != "auto":
            self.image = Image.from_base(self.image)
        if self.resources is not None and not isinstance(self.resources, Resources):
            raise ValueError(f"TaskEnvironment: resources={self.resources!r} must be flyte.Resources")
        if self.reusable is not None and not isinstance(self.reusable, ReusePolicy):
            raise ValueError(f"TaskEnvironment: reusable={self.reusable!r} must be flyte.ReusePolicy")
        for key, value in (self.env_vars or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"TaskEnvironment: env_vars[{key!r}]={value!r} must map str to str")
        self._cache = normalize_cache(self.cache)
        self._secrets = normalize_secrets(self.secrets)
        if self.pod_template is not None and not isinstance(self.pod_template, PodTemplate | str):
            raise ValueError(f"TaskEnvironment: pod_template={self.pod_template!r} must be a flyte.PodTemplate")
        for dependency in self.depends_on:
            if not isinstance(dependency, TaskEnvironment):
                raise ValueError(f"TaskEnvironment: depends_on holds {dependency!r}, not a TaskEnvironment")
        _ENVIRONMENTS[self.name] = self

    @property
    def tasks(self) -> Mapping[str, TaskTemplate[..., Any]]:
        """This environment's tasks by function name."""
        return self._tasks

    def add_dependency(self, *envs: TaskEnvironment) -> None:
        """Deploy these environments whenever this one is deployed (tasks here call theirs)."""
        for env in envs:
            if not isinstance(env, TaskEnvironment):
                raise ValueError(f"add_dependency: {env!r} is not a TaskEnvironment")
            if env is not self and env not in self.depends_on:
                self.depends_on.append(env)

    @classmethod
    def from_task(cls, name: str, *tasks: TaskTemplate[..., Any]) -> TaskEnvironment:
        """Flyte 2's environment made of existing tasks; here a task's name includes its environment's, so
        tasks cannot move between environments."""
        raise not_implemented("TaskEnvironment.from_task", "moving tasks between environments (define them in one)")

    def clone_with(self, name: str, **changes: Any) -> TaskEnvironment:
        """A new environment with another name and some settings changed; it starts with no tasks."""
        fields = {f.name for f in dataclasses.fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - fields
        if unknown:
            raise TypeError(f"clone_with: unknown settings {sorted(unknown)}")
        values = {f: getattr(self, f) for f in fields if f != "name"}
        values.update(changes)
        values["depends_on"] = list(values["depends_on"])
        return TaskEnvironment(name=name, **values)

    @overload
    def task(self, _func: F, /) -> F: ...

    @overload
    def task(
        self,
        _func: None = None,
        /,
        *,
        short_name: str | None = None,
        cache: CacheRequest = None,
        retries: int | RetryStrategy = 0,
        timeout: int | float | timedelta | Timeout | None = None,
        queue: str | None = None,
        report: bool = False,
        max_inline_io_bytes: int = DEFAULT_MAX_INLINE_IO_BYTES,
        placement: Placement | None = None,
        docs: str | None = None,
        pod_template: PodTemplate | str | None = None,
        interruptible: bool | None = None,
        triggers: tuple[Any, ...] | list[Any] | Any = (),
        links: tuple[Any, ...] | list[Any] | Any = (),
        entrypoint: bool = False,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        _func: F | None = None,
        /,
        *,
        short_name: str | None = None,
        cache: CacheRequest = None,
        retries: int | RetryStrategy = 0,
        timeout: int | float | timedelta | Timeout | None = None,
        queue: str | None = None,
        report: bool = False,
        max_inline_io_bytes: int = DEFAULT_MAX_INLINE_IO_BYTES,
        placement: Placement | None = None,
        docs: str | None = None,
        pod_template: PodTemplate | str | None = None,
        interruptible: bool | None = None,
        triggers: tuple[Any, ...] | list[Any] | Any = (),
        links: tuple[Any, ...] | list[Any] | Any = (),
        entrypoint: bool = False,
    ) -> F | Callable[[F], F]:
        """Make a function a task of this environment: `@env.task` or `@env.task(retries=3, ...)`."""
        if not isinstance(max_inline_io_bytes, int) or max_inline_io_bytes <= 0:
            raise ValueError(f"task: max_inline_io_bytes={max_inline_io_bytes!r} must be a positive int")
        if placement is not None and self.placement is not None:
            placement = self.placement.merge(placement)
        if links:
            raise not_implemented("@env.task(links=)", "UI links on tasks")
        task_triggers = normalize_triggers(triggers)
        if pod_template is not None and not isinstance(pod_template, PodTemplate | str):
            raise ValueError(f"task: pod_template={pod_template!r} must be a flyte.PodTemplate")
        retry_strategy = normalize_retries(retries)
        task_timeout = normalize_timeout(timeout)
        task_cache = normalize_cache(cache) if cache is not None else self._cache

        def decorate(func: F) -> F:
            if not callable(func) or not hasattr(func, "__name__"):
                raise TypeError(f"@{self.name}.task decorates a function, not {func!r}")
            settings = TaskSettings(
                resources=self.resources,
                retries=retry_strategy,
                timeout=task_timeout,
                cache=task_cache,
                env_vars=dict(self.env_vars or {}),
                secrets=self._secrets,
                queue=queue or self.queue,
                reusable=self.reusable,
                placement=placement or self.placement,
                short_name=short_name or func.__name__,
                max_inline_io_bytes=max_inline_io_bytes,
                report=report,
                pod_template=_pod_template(pod_template or self.pod_template),
                entrypoint=bool(entrypoint),
                interruptible=self.interruptible if interruptible is None else interruptible,
                docs=docs,
                triggers=task_triggers,
            )
            template: TaskTemplate[..., Any] = TaskTemplate(func, self, settings)
            trigger_specs(template)  # a trigger's inputs that do not fit the task fail here, not at deploy
            self._tasks[func.__name__] = template
            return template  # type: ignore[return-value]

        if _func is not None:
            return decorate(_func)
        return decorate


def _pod_template(value: PodTemplate | str | None) -> PodTemplate | None:
    # Flyte 2 also takes the name of a cluster-side PodTemplate; no cluster here holds named templates.
    if isinstance(value, str):
        raise not_implemented(f"pod_template={value!r}", "named cluster PodTemplates (pass a flyte.PodTemplate)")
    return value


Environment.register(TaskEnvironment)
