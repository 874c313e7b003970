"""Resource amounts as people read them in reasons and verdicts: `memory 16 GiB`, not `memory 1.71799e+10`."""

from __future__ import annotations

_BINARY = (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10))


def amount_text(resource: str, amount: float) -> str:
    """`amount` of `resource` (a snapshot key: cpu, memory in bytes, gpu or gpu:TYPE) in human units."""
    if resource == "memory":
        for unit, size in _BINARY:
            if abs(amount) >= size:
                scaled = amount / size
                # Three significant digits, never an exponent (1000 GiB, not 1e+03 GiB).
                return f"{scaled:.0f} {unit}" if abs(scaled) >= 100 else f"{scaled:.3g} {unit}"
        return f"{amount:.0f} B"
    return f"{amount:g}"
