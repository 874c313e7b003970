"""What compute a task asks for (CPU, memory, GPUs, disk, shared memory), in Kubernetes-style quantities.

`Resources` keeps the user's spelling (so `repr` reads like the source) and exposes normalised numbers
through properties and `to_dict()`; compare `to_dict()` outputs, not the objects, to compare amounts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias

from ._devices import Device

__all__ = ["CpuAmount", "MemoryAmount", "Resources", "parse_cpu", "parse_quantity"]

CpuAmount: TypeAlias = int | float | str
"""Cores as a number, or a string such as "2", "1.5" or "500m" (millicores)."""

MemoryAmount: TypeAlias = int | str
"""Bytes as an int, or a string such as "512Mi", "2Gi", "1G" or "1048576"."""

_UNITS: dict[str, int] = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    # Kubernetes spells decimal kilo "k"; "K" is accepted too because people write it.
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
_NUMBER = r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY_RE = re.compile(_NUMBER + r"(?P<suffix>Ki|Mi|Gi|Ti|k|K|M|G|T)?")
_CPU_RE = re.compile(_NUMBER + r"(?P<milli>m)?")
# Two models Flyte 2 spells with spaces; any other space is a typo ("A 100"), refused.
_GPU_RE = re.compile(r"(?P<type>A100 80G|RTX PRO 6000|[A-Za-z0-9_-]+)(?::(?P<count>[0-9]+))?")

_QUANTITY_HINT = "is not a quantity like '512Mi' or '2Gi'"
_CPU_HINT = "is not a CPU amount like 2, 0.5 or '500m'"
_GPU_HINT = "is not a GPU count like 2, a GPU type like 'T4' or 'A100:2', or a flyte.GPU(...) device"


# The private parsers raise with the reason only, so each caller can say which value (and field) it was.
def _quantity(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(_QUANTITY_HINT)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be > 0")
        return value
    if not isinstance(value, str):
        raise ValueError(_QUANTITY_HINT)
    match = _QUANTITY_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(_QUANTITY_HINT)
    number = Decimal(match["number"])
    if number <= 0:
        raise ValueError("must be > 0")
    # Kubernetes rounds fractional bytes up; rounding down could turn a tiny request into zero.
    return math.ceil(number * _UNITS[match["suffix"] or ""])


def _cpu(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(_CPU_HINT)
    if isinstance(value, int | float):
        cores = float(value)
        if not math.isfinite(cores):
            raise ValueError("must be a finite number of cores")
    elif isinstance(value, str):
        match = _CPU_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(_CPU_HINT)
        cores = float(match["number"]) / (1000 if match["milli"] else 1)
    else:
        raise ValueError(_CPU_HINT)
    if cores <= 0:
        raise ValueError("must be > 0")
    return cores


def _gpu(value: object) -> tuple[str | None, int]:
    if isinstance(value, Device):
        return value.device, value.quantity
    if isinstance(value, bool):
        raise ValueError(_GPU_HINT)
    if isinstance(value, int):
        if value < 1:
            raise ValueError("must be a GPU count >= 1")
        return None, value
    if not isinstance(value, str):
        raise ValueError(_GPU_HINT)
    match = _GPU_RE.fullmatch(value.strip())
    # An all-digit "type" is almost certainly a count passed as a string; refuse rather than guess.
    if match is None or match["type"].isdigit():
        raise ValueError(_GPU_HINT)
    count = 1 if match["count"] is None else int(match["count"])
    if count < 1:
        raise ValueError("must ask for at least one GPU")
    return match["type"], count


def parse_quantity(value: str | int) -> int:
    """Bytes in a Kubernetes quantity such as "512Mi", "2Gi", "1G" or 1048576; ValueError if malformed."""
    try:
        return _quantity(value)
    except ValueError as err:
        raise ValueError(f"{value!r} {err}") from None


def parse_cpu(value: int | float | str) -> float:
    """Cores in a CPU amount such as 2, 0.5, "1.5" or "500m"; ValueError if malformed or not > 0."""
    try:
        return _cpu(value)
    except ValueError as err:
        raise ValueError(f"{value!r} {err}") from None


def _scalar(value: object, field: str, parse: Callable[[object], object]) -> object:
    try:
        parse(value)
    except ValueError as err:
        raise ValueError(f"Resources: {field}={value!r} {err}") from None
    return value.strip() if isinstance(value, str) else value


def _request_limit(value: object, field: str, parse: Callable[[object], float | int]) -> object:
    """A scalar or a (request, limit) pair, checked; a list becomes a tuple so the object stays hashable."""
    if not isinstance(value, tuple | list):
        return _scalar(value, field, parse)
    if len(value) != 2:
        raise ValueError(f"Resources: {field}={value!r} must be one amount or a (request, limit) pair")
    amounts: list[float | int] = []
    for role, item in zip(("request", "limit"), value, strict=True):
        try:
            amounts.append(parse(item))
        except ValueError as err:
            raise ValueError(f"Resources: {field}={value!r}: {role} {item!r} {err}") from None
    if amounts[1] < amounts[0]:
        raise ValueError(f"Resources: {field}={value!r}: the limit must be >= the request")
    return tuple(item.strip() if isinstance(item, str) else item for item in value)


@dataclass(frozen=True)
class Resources:
    """Compute requested for each attempt of a task; a single amount means request == limit."""

    cpu: CpuAmount | tuple[CpuAmount, CpuAmount] | None = None
    """Cores (2, 0.5, "1.5", "500m") or a (request, limit) pair; None leaves it to the backend."""

    memory: MemoryAmount | tuple[MemoryAmount, MemoryAmount] | None = None
    """Memory ("512Mi", "2Gi", bytes) or a (request, limit) pair; None leaves it to the backend."""

    gpu: int | str | Device | None = None
    """A GPU count (2), a type ("T4", one GPU), type and count ("A100:2") or a `flyte.GPU(...)`/`TPU(...)` device;
    None for no GPU."""

    disk: MemoryAmount | None = None
    """Ephemeral scratch disk ("10Gi", bytes); None leaves it to the backend."""

    shm: MemoryAmount | None = None
    """Size of /dev/shm ("1Gi", bytes) or "auto" to size it from the memory limit; None: the default."""

    def __post_init__(self) -> None:
        if self.cpu is not None:
            object.__setattr__(self, "cpu", _request_limit(self.cpu, "cpu", _cpu))
        if self.memory is not None:
            object.__setattr__(self, "memory", _request_limit(self.memory, "memory", _quantity))
        if self.gpu is not None:
            object.__setattr__(self, "gpu", _scalar(self.gpu, "gpu", _gpu))
        if self.disk is not None:
            object.__setattr__(self, "disk", _scalar(self.disk, "disk", _quantity))
        if self.shm is not None:
            if isinstance(self.shm, str) and self.shm.strip() == "auto":
                object.__setattr__(self, "shm", "auto")
            else:
                object.__setattr__(self, "shm", _scalar(self.shm, "shm", _quantity))

    @property
    def cpu_request(self) -> float | None:
        """Requested cores, or None when unset."""
        if self.cpu is None:
            return None
        return parse_cpu(self.cpu[0] if isinstance(self.cpu, tuple) else self.cpu)

    @property
    def cpu_limit(self) -> float | None:
        """Core limit (the request when only one amount was given), or None when unset."""
        if self.cpu is None:
            return None
        return parse_cpu(self.cpu[1] if isinstance(self.cpu, tuple) else self.cpu)

    @property
    def memory_request_bytes(self) -> int | None:
        """Requested memory in bytes, or None when unset."""
        if self.memory is None:
            return None
        return parse_quantity(self.memory[0] if isinstance(self.memory, tuple) else self.memory)

    @property
    def memory_limit_bytes(self) -> int | None:
        """Memory limit in bytes (the request when only one amount was given), or None when unset."""
        if self.memory is None:
            return None
        return parse_quantity(self.memory[1] if isinstance(self.memory, tuple) else self.memory)

    @property
    def disk_bytes(self) -> int | None:
        """Scratch disk in bytes, or None when unset."""
        return None if self.disk is None else parse_quantity(self.disk)

    @property
    def shm_bytes(self) -> int | None:
        """/dev/shm size in bytes; None when unset or "auto" (check `shm` to tell them apart)."""
        if self.shm is None or self.shm == "auto":
            return None
        return parse_quantity(self.shm)

    @property
    def gpu_type(self) -> str | None:
        """The GPU model asked for ("A100"), or None when unset or any model will do."""
        return None if self.gpu is None else _gpu(self.gpu)[0]

    @property
    def gpu_count(self) -> int:
        """How many GPUs; 0 when none were asked for."""
        return 0 if self.gpu is None else _gpu(self.gpu)[1]

    def to_dict(self) -> dict[str, object]:
        """Normalised amounts (cores as floats, sizes in bytes) of the fields that are set."""
        out: dict[str, object] = {}
        if self.cpu is not None:
            out["cpu"] = {"request": self.cpu_request, "limit": self.cpu_limit}
        if self.memory is not None:
            out["memory"] = {"request": self.memory_request_bytes, "limit": self.memory_limit_bytes}
        if self.gpu is not None:
            out["gpu"] = {"type": self.gpu_type, "count": self.gpu_count}
            if isinstance(self.gpu, Device):
                out["gpu"] = {**self.gpu.to_dict(), **out["gpu"]}  # type: ignore[dict-item]
        if self.disk is not None:
            out["disk"] = self.disk_bytes
        if self.shm is not None:
            out["shm"] = "auto" if self.shm == "auto" else self.shm_bytes
        return out
