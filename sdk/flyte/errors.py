"""The errors users catch, one taxonomy for local and remote mode.

::

    RuntimeError
    └── BaseRuntimeError                 code, kind ("user" | "system"), message, remote traceback
        ├── RuntimeUserError             the task's code failed; consumes the task's user retries
        │   ├── OOMError                 the action ran out of memory (recover with a bigger override)
        │   ├── TaskTimeoutError         an attempt ran past its `timeout`
        │   ├── RetriesExhaustedError    system retries ran out (infrastructure kept failing)
        │   ├── ActionAbortedError       the run or the action was aborted
        │   ├── RemoteTaskNotFoundError  `remote.Task.get` names no deployed task
        │   ├── NonRecoverableError      raise it to fail at once: never retried
        │   ├── InlineIOMaxBytesBreached a value is over the task's `max_inline_io_bytes`
        │   ├── ValueEncodingError       an input or output cannot cross an action boundary
        │   ├── ModuleLoadError          a module of the code bundle raised as a worker imported it
        │   ├── DeploymentError          a deployment was refused
        │   ├── CustomError              a code of the user's choosing
        │   └── (Flyte 2's finer errors: ActionNotFoundError, ConditionTimedOutError, ...)
        └── RuntimeSystemError           the platform failed (lost worker, node, agent); system retries, never
            │                            the user's
            └── RuntimeUnknownError, SlowDownError, TaskInterruptedError, UnionRpcError

An ordinary exception raised in a child action reaches its parent as a `RuntimeUserError` whose `code` is the
exception's type name. When that type is importable in the parent (builtins such as `ValueError`, or the
user's own exception classes), the error raised is also an instance of it, so both `except ValueError` and
`except flyte.errors.RuntimeUserError` work as a Python programmer expects. As in Flyte 2, every one of them is
also a `RuntimeError`.

Whether an error is worth another attempt is a property of its class (`retryable`, True unless the class says
otherwise); `is_retryable` reads it off a record's `error_type`. The platform, which decides failures without raising
anything, builds their records from the classes too: `NonRecoverableError.info("it never fits", code="NeverFits")`.
"""

from __future__ import annotations

import builtins
import sys
import traceback as _traceback
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._wire import ErrorInfo

ErrorKind = Literal["user", "system"]

__all__ = [
    "ActionAbortedError",
    "ActionNotFoundError",
    "BaseRuntimeError",
    "CodeBundleError",
    "ConditionAlreadyExistsError",
    "ConditionFailedError",
    "ConditionNotFoundError",
    "ConditionTimedOutError",
    "CustomError",
    "DeploymentError",
    "ErrorKind",
    "EventAlreadyExistsError",
    "EventFailedError",
    "EventNotFoundError",
    "EventTimedOutError",
    "ImageBuildError",
    "ImagePullBackOffError",
    "InitializationError",
    "InlineIOMaxBytesBreached",
    "InvalidImageNameError",
    "InvalidPackageError",
    "LogsNotYetAvailableError",
    "ModuleLoadError",
    "NonRecoverableError",
    "NotInTaskContextError",
    "OOMError",
    "OnlyAsyncIOSupportedError",
    "ParameterMaterializationError",
    "PrimaryContainerNotFoundError",
    "ReferenceTaskError",
    "RemoteTaskError",
    "RemoteTaskNotFoundError",
    "RemoteTaskUsageError",
    "RestrictedTypeError",
    "RetriesExhaustedError",
    "RunAbortedError",
    "RuntimeDataValidationError",
    "RuntimeSystemError",
    "RuntimeUnknownError",
    "RuntimeUserError",
    "SlowDownError",
    "TaskInterruptedError",
    "TaskTimeoutError",
    "TraceDoesNotAllowNestedTasksError",
    "UnionRpcError",
    "ValueEncodingError",
    "is_retryable",
]


class BaseRuntimeError(RuntimeError):
    """An action failed. `code` names what failed (an exception type or a platform condition)."""

    kind: ErrorKind = "user"
    retryable: bool = True

    def __init__(self, code: str, message: str, *, traceback: str | None = None, worker: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.traceback = traceback
        """The traceback as the failing worker printed it."""
        self.worker = worker
        """Where the failure happened: a cluster, pod or process, when known."""

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.message else self.code

    @classmethod
    def info(
        cls, message: str, *, code: str | None = None, traceback: str | None = None, worker: str | None = None
    ) -> ErrorInfo:
        """The wire record of a failure of this class that no code raised (the platform decided it): its kind is
        the class's, its code the class name unless given."""
        from ._wire import ErrorInfo  # here: `flyte.errors` stays free of pydantic for the CLI's fast paths

        return ErrorInfo(
            error_type=cls.__name__,
            code=code or cls.__name__,
            kind=cls.kind,
            message=message[:65_536],
            traceback=traceback,
            worker=worker,
        )

    def __reduce__(self) -> tuple[object, ...]:
        error_type, exception_type = describe(self)
        return (
            _rebuild,
            (error_type, self.code, self.message, self.kind, exception_type, self.traceback, self.worker),
        )


class RuntimeUserError(BaseRuntimeError):
    """The task's own code raised. Retried while the task has user retries left."""

    kind: ErrorKind = "user"


class RuntimeSystemError(BaseRuntimeError):
    """The platform failed under the task. Retried on the system budget, never the user's."""

    kind: ErrorKind = "system"


class OOMError(RuntimeUserError):
    """The action exceeded its memory limit."""

    def __init__(self, message: str = "out of memory", **kw: str | None):
        super().__init__("OOMError", message, **kw)


class TaskTimeoutError(RuntimeUserError):
    """An attempt ran longer than the task's `timeout`."""

    def __init__(self, message: str = "the task timed out", **kw: str | None):
        super().__init__("TaskTimeoutError", message, **kw)


class RetriesExhaustedError(RuntimeUserError):
    """System retries ran out: the platform failed every attempt."""

    retryable = False

    def __init__(self, message: str = "system retries exhausted", **kw: str | None):
        super().__init__("RetriesExhaustedError", message, **kw)


class ActionAbortedError(RuntimeUserError):
    """The run or the action was aborted."""

    retryable = False

    def __init__(self, message: str = "aborted", **kw: str | None):
        super().__init__("ActionAbortedError", message, **kw)


class RemoteTaskNotFoundError(RuntimeUserError):
    """No deployed task has that name (or that version)."""

    retryable = False

    def __init__(self, message: str, **kw: str | None):
        super().__init__("RemoteTaskNotFoundError", message, **kw)


class NonRecoverableError(RuntimeUserError):
    """Raise it from a task to fail without retrying."""

    retryable = False

    def __init__(self, message: str = "non-recoverable", **kw: str | None):
        super().__init__("NonRecoverableError", message, **kw)


class InlineIOMaxBytesBreached(RuntimeUserError):
    """An input or output is larger than the task allows inline."""

    retryable = False

    def __init__(self, message: str, **kw: str | None):
        super().__init__("InlineIOMaxBytesBreached", message, **kw)


class ValueEncodingError(RuntimeUserError):
    """A value cannot cross an action boundary: it does not match its annotation or cannot be pickled."""

    retryable = False

    def __init__(self, message: str, **kw: str | None):
        super().__init__("ValueEncodingError", message, **kw)


class ModuleLoadError(RuntimeUserError):
    """A module of the code bundle raised (or called `sys.exit`) while a worker imported it. Retried by the task's
    `retries`, as any error of its code. A failure that crossed an action boundary is also an instance of the
    exception the module raised, when that type is importable (`except IndexError` matches)."""

    def __init__(self, message: str, **kw: str | None):
        super().__init__("ModuleLoadError", message, **kw)


class DeploymentError(RuntimeUserError):
    """A deployment was refused."""

    retryable = False

    def __init__(self, message: str, **kw: str | None):
        super().__init__("DeploymentError", message, **kw)


class _FlyteNamedUserError(RuntimeUserError):
    """A user error whose code is its class name (Flyte 2's fine-grained errors)."""

    def __init__(self, message: str = "", **kw: str | None):
        super().__init__(type(self).__name__, message, **kw)


class _FlyteNamedSystemError(RuntimeSystemError):
    """A system error whose code is its class name."""

    def __init__(self, message: str = "", **kw: str | None):
        super().__init__(type(self).__name__, message, **kw)


class CustomError(RuntimeUserError):
    """An error with a code of the user's choosing: `raise CustomError("QuotaExceeded", "...")`."""

    def __init__(self, code: str, message: str, **kw: str | None):
        super().__init__(code, message, **kw)

    @classmethod
    def from_exception(cls, error: Exception) -> CustomError:
        """The exception as a CustomError coded with its type name."""
        made = cls(type(error).__name__, str(error))
        made.__cause__ = error
        return made


class ActionNotFoundError(_FlyteNamedUserError):
    """No action has that name."""

    retryable = False


class CodeBundleError(_FlyteNamedUserError):
    """The code bundle could not be made or loaded."""

    retryable = False


class ImageBuildError(_FlyteNamedUserError):
    """An image could not be built."""

    retryable = False


class ImagePullBackOffError(_FlyteNamedUserError):
    """The task's image could not be pulled."""

    retryable = False


class InitializationError(_FlyteNamedUserError):
    """The SDK was used before `flyte.init` set what it needs."""

    retryable = False


class InvalidImageNameError(_FlyteNamedUserError):
    """An image name is malformed."""

    retryable = False


class InvalidPackageError(_FlyteNamedUserError):
    """A package to install is malformed or unknown."""

    retryable = False


class LogsNotYetAvailableError(_FlyteNamedUserError):
    """The action's logs are not available yet."""


class NotInTaskContextError(_FlyteNamedUserError):
    """Called outside a running task, where it needs one."""

    retryable = False


class OnlyAsyncIOSupportedError(_FlyteNamedUserError):
    """Only asyncio is supported for this call."""

    retryable = False


class ParameterMaterializationError(_FlyteNamedUserError):
    """An input could not be materialised for the task."""

    retryable = False


class PrimaryContainerNotFoundError(_FlyteNamedUserError):
    """A pod template names no primary container."""

    retryable = False


class ReferenceTaskError(_FlyteNamedUserError):
    """A reference to a deployed task failed."""

    retryable = False


class RemoteTaskError(_FlyteNamedUserError):
    """A deployed task failed."""


class RemoteTaskUsageError(_FlyteNamedUserError):
    """A deployed task was called the wrong way."""

    retryable = False


class RestrictedTypeError(_FlyteNamedUserError):
    """A value of a type that cannot cross an action boundary."""

    retryable = False


class RunAbortedError(_FlyteNamedUserError):
    """The run was aborted."""

    retryable = False


class RuntimeDataValidationError(_FlyteNamedUserError):
    """An input or output failed validation against its type."""

    retryable = False


class TraceDoesNotAllowNestedTasksError(_FlyteNamedUserError):
    """A task was called inside a `@flyte.trace` function."""

    retryable = False


class ConditionAlreadyExistsError(_FlyteNamedUserError):
    """A condition of that name already exists."""

    retryable = False


class ConditionFailedError(_FlyteNamedUserError):
    """A condition was failed instead of signalled."""

    retryable = False


class ConditionNotFoundError(_FlyteNamedUserError):
    """No condition has that name."""

    retryable = False


class ConditionTimedOutError(_FlyteNamedUserError):
    """A condition was not signalled before its timeout."""

    retryable = False


class EventAlreadyExistsError(_FlyteNamedUserError):
    """An event of that name already exists."""

    retryable = False


class EventFailedError(_FlyteNamedUserError):
    """An event was failed instead of signalled."""

    retryable = False


class EventNotFoundError(_FlyteNamedUserError):
    """No event has that name."""

    retryable = False


class EventTimedOutError(_FlyteNamedUserError):
    """An event was not signalled before its timeout."""

    retryable = False


class RuntimeUnknownError(_FlyteNamedSystemError):
    """A failure of unknown origin, counted against the system budget."""


class SlowDownError(_FlyteNamedSystemError):
    """The control plane asked the client to slow down."""


class TaskInterruptedError(_FlyteNamedSystemError):
    """The task's pod or process was interrupted (preempted, evicted)."""


class UnionRpcError(_FlyteNamedSystemError):
    """A call to the control plane failed."""


_NAMED: dict[str, type[BaseRuntimeError]] = {
    cls.__name__: cls
    for cls in (
        BaseRuntimeError,
        RuntimeUserError,
        RuntimeSystemError,
        OOMError,
        TaskTimeoutError,
        RetriesExhaustedError,
        ActionAbortedError,
        RemoteTaskNotFoundError,
        NonRecoverableError,
        InlineIOMaxBytesBreached,
        ValueEncodingError,
        ModuleLoadError,
        DeploymentError,
        ActionNotFoundError,
        CodeBundleError,
        ImageBuildError,
        ImagePullBackOffError,
        InitializationError,
        InvalidImageNameError,
        InvalidPackageError,
        LogsNotYetAvailableError,
        NotInTaskContextError,
        OnlyAsyncIOSupportedError,
        ParameterMaterializationError,
        PrimaryContainerNotFoundError,
        ReferenceTaskError,
        RemoteTaskError,
        RemoteTaskUsageError,
        RestrictedTypeError,
        RunAbortedError,
        RuntimeDataValidationError,
        TraceDoesNotAllowNestedTasksError,
        ConditionAlreadyExistsError,
        ConditionFailedError,
        ConditionNotFoundError,
        ConditionTimedOutError,
        EventAlreadyExistsError,
        EventFailedError,
        EventNotFoundError,
        EventTimedOutError,
        RuntimeUnknownError,
        SlowDownError,
        TaskInterruptedError,
        UnionRpcError,
        CustomError,
    )
}
_OWN_BASES: frozenset[type] = frozenset(BaseRuntimeError.__mro__[1:])
_MIXED: dict[tuple[type[BaseRuntimeError], type[BaseException]], type[BaseRuntimeError]] = {}


def _exception_type(qualified_name: str) -> type[BaseException] | None:
    """The exception class named `module.QualName` if it is already loaded in this process; never imports."""
    module_name, _, qualname = qualified_name.rpartition(".")
    module = builtins if module_name in ("", "builtins") else sys.modules.get(module_name)
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, BaseRuntimeError):
        return obj
    return None


def _mixed_type(base: type[BaseRuntimeError], original: type[BaseException]) -> type[BaseRuntimeError]:
    key = (base, original)
    mixed = _MIXED.get(key)
    if mixed is None:
        try:
            mixed = type(original.__name__, (base, original), {"__module__": "flyte.errors"})
        except TypeError:
            # Some exception types cannot share a layout with ours; plain RuntimeUserError still carries the code.
            mixed = base
        _MIXED[key] = mixed
    return mixed


def from_parts(
    error_type: str,
    code: str,
    message: str,
    *,
    kind: ErrorKind,
    exception_type: str | None = None,
    traceback: str | None = None,
    worker: str | None = None,
) -> BaseRuntimeError:
    """Rebuild an error that crossed an action boundary (the inverse of the wire's error record)."""
    base = _NAMED.get(error_type) or (RuntimeSystemError if kind == "system" else RuntimeUserError)
    cls: type[BaseRuntimeError] = base
    make: type[BaseException] = base
    if exception_type is not None and base in (RuntimeUserError, ModuleLoadError):
        original = _exception_type(exception_type)
        if original is not None:
            cls = _mixed_type(base, original)
            # The original's constructor: RuntimeError's, first in the method order, cannot make an OSError.
            make = original
    try:
        error = make.__new__(cls, message)
    except TypeError:
        # An exception type whose constructor we cannot drive (e.g. one with required arguments): keep the code.
        cls = base
        error = cls.__new__(cls, message)
    BaseRuntimeError.__init__(error, code, message, traceback=traceback, worker=worker)
    return error


def is_retryable(error_type: str) -> bool:
    """Whether a failure recorded as `error_type` (a class of this module) may be tried again; a name this module
    does not know (a newer SDK's) may, as its base classes may."""
    named = _NAMED.get(error_type)
    return True if named is None else named.retryable


def describe(error: BaseRuntimeError) -> tuple[str, str | None]:
    """The taxonomy class name of an error, and module.QualName of the exception it mirrors, if any."""
    mro = type(error).__mro__
    error_type = next(b.__name__ for b in mro if b.__module__ == __name__ and b.__name__ in _NAMED)
    # Our classes' own bases (RuntimeError and up) are not an original exception.
    original = next((b for b in mro if not issubclass(b, BaseRuntimeError) and b not in _OWN_BASES), None)
    exception_type = None if original is None else f"{original.__module__}.{original.__qualname__}"
    return error_type, exception_type


def _rebuild(
    error_type: str,
    code: str,
    message: str,
    kind: ErrorKind,
    exception_type: str | None,
    traceback: str | None,
    worker: str | None,
) -> BaseRuntimeError:
    return from_parts(
        error_type, code, message, kind=kind, exception_type=exception_type, traceback=traceback, worker=worker
    )


def error_info(error: BaseException) -> ErrorInfo:
    """The wire record of an exception raised by a task's code (a user error) or a flyte error; `from_info` is its
    inverse."""
    # Imported here: `flyte.errors` stays free of pydantic for the CLI's fast paths, and the wire sits below it.
    from ._wire import ErrorInfo

    if isinstance(error, BaseRuntimeError):
        error_type, exception_type = describe(error)
        return ErrorInfo(
            error_type=error_type,
            code=error.code,
            kind=error.kind,
            message=error.message[:65_536],
            exception_type=exception_type,
            traceback=_tail(error.traceback),
            worker=error.worker,
        )
    return ErrorInfo(
        error_type="RuntimeUserError",
        code=type(error).__name__,
        kind="user",
        message=str(error)[:65_536],
        exception_type=f"{type(error).__module__}.{type(error).__qualname__}",
        traceback=_tail("".join(_traceback.format_exception(error))),
    )


def from_info(info: ErrorInfo) -> BaseRuntimeError:
    """The exception a wire error record stands for (the inverse of `error_info`)."""
    return from_parts(
        info.error_type,
        info.code,
        info.message,
        kind=info.kind,
        exception_type=info.exception_type,
        traceback=info.traceback,
        worker=info.worker,
    )


def _tail(text: str | None, limit: int = 1_048_576) -> str | None:
    """Keep the end of an over-long traceback: the frame that raised is at the bottom."""
    return text if text is None or len(text) <= limit else text[-limit:]
