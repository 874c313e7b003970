"""Accelerators by name: `flyte.GPU("A100", 2)`, `flyte.TPU("V5P", "2x2x1")` and the other Flyte 2 device helpers.

Each helper validates its arguments against the models Flyte 2 knows and returns a `Device`, which
`Resources(gpu=...)` accepts beside a count or an "A100:2" string. The device's model becomes the GPU type
placement matches on; its partition (a MIG profile or a TPU slice) travels with the resources for backends that
can honour it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# The helpers keep Flyte 2's capitalised function names (flyte.GPU, flyte.TPU, ...): programs call them so.

__all__ = ["AMD_GPU", "GPU", "HABANA_GAUDI", "TPU", "Device", "DeviceClass", "Neuron"]

DeviceClass = Literal["GPU", "TPU", "NEURON", "AMD_GPU", "HABANA_GAUDI"]

GPUType = Literal[
    "A2", "A10", "A10G", "A100", "A100 80G", "B200", "H100", "H200", "L4", "L40s", "T4", "V100", "RTX PRO 6000", "GB10"
]
GPUQuantity = Literal[1, 2, 3, 4, 5, 6, 7, 8]
TPUType = Literal["V5P", "V6E"]
NeuronType = Literal["Inf1", "Inf2", "Trn1", "Trn1n", "Trn2", "Trn2u"]
AMDGPUType = Literal["MI100", "MI210", "MI250", "MI250X", "MI300A", "MI300X", "MI325X", "MI350X", "MI355X"]
HabanaGaudiType = Literal["Gaudi1"]

# MIG profiles per GPU model, and slice shapes per TPU generation: the partitions a scheduler can actually place.
_GPU_PARTITIONS: dict[str, tuple[str, ...]] = {
    "A100": ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    "A100 80G": ("1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100": ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H200": ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
}
_TPU_PARTITIONS: dict[str, tuple[str, ...]] = {
    "V5P": (
        "2x2x1",
        "2x2x2",
        "2x4x4",
        "4x4x4",
        "4x4x8",
        "4x8x8",
        "8x8x8",
        "8x8x16",
        "8x16x16",
        "16x16x16",
        "16x16x24",
    ),
    "V6E": ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"),
}
_CLASSES: tuple[str, ...] = get_args(DeviceClass)


@dataclass(frozen=True, slots=True)
class Device:
    """An accelerator request: how many, of which class, which model, and which partition of it."""

    quantity: int
    """How many devices (>= 1)."""

    device_class: DeviceClass
    """GPU, TPU, NEURON, AMD_GPU or HABANA_GAUDI."""

    device: str | None = None
    """The model ("A100", "V5P"); None lets the backend pick any model of the class."""

    partition: str | None = None
    """A MIG profile ("1g.5gb") or TPU slice ("2x2x1"); None for whole devices."""

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise ValueError(f"Device: quantity={self.quantity!r} must be an int >= 1")
        if self.device_class not in _CLASSES:
            raise ValueError(f"Device: device_class={self.device_class!r} must be one of {list(_CLASSES)}")

    def to_dict(self) -> dict[str, object]:
        """The request as plain values, for the wire and for display."""
        return {
            "class": self.device_class,
            "type": self.device,
            "count": self.quantity,
            "partition": self.partition,
        }


def _one_of(kind: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{kind}: {value!r} is not one of {list(allowed)}")


def GPU(device: GPUType, quantity: GPUQuantity, partition: str | None = None) -> Device:
    """`quantity` NVIDIA GPUs of model `device`, optionally one MIG `partition` of each."""
    _one_of("GPU device", device, get_args(GPUType))
    _one_of("GPU quantity", quantity, get_args(GPUQuantity))
    if partition is not None:
        _one_of(f"GPU partition of {device}", partition, _GPU_PARTITIONS.get(device, ()))
    return Device(quantity=quantity, device_class="GPU", device=device, partition=partition)


def TPU(device: TPUType, partition: str | None = None) -> Device:
    """A Google TPU of generation `device`, optionally a slice `partition` ("2x2x1")."""
    _one_of("TPU device", device, get_args(TPUType))
    if partition is not None:
        _one_of(f"TPU partition of {device}", partition, _TPU_PARTITIONS[device])
    return Device(quantity=1, device_class="TPU", device=device, partition=partition)


def Neuron(device: NeuronType) -> Device:
    """An AWS Neuron (Inferentia or Trainium) device."""
    _one_of("Neuron device", device, get_args(NeuronType))
    return Device(quantity=1, device_class="NEURON", device=device)


def AMD_GPU(device: AMDGPUType) -> Device:
    """An AMD Instinct GPU."""
    _one_of("AMD GPU device", device, get_args(AMDGPUType))
    return Device(quantity=1, device_class="AMD_GPU", device=device)


def HABANA_GAUDI(device: HabanaGaudiType) -> Device:
    """An Intel Habana Gaudi accelerator."""
    _one_of("Habana Gaudi device", device, get_args(HabanaGaudiType))
    return Device(quantity=1, device_class="HABANA_GAUDI", device=device)
