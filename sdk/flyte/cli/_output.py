"""How the CLI writes values for people: durations here, one way everywhere (progress, trace, placement)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """A duration rounded for reading: `0.4 ms`, `20 ms`, `1.2 s`, `3 m 4 s`, `2 h 5 m`."""
    seconds = max(0.0, seconds)
    millis = seconds * 1000
    if round(millis, 1) < 10:
        return f"{millis:.1f} ms"
    if round(millis) < 1000:
        return f"{millis:.0f} ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    minutes = whole // 60
    return f"{minutes // 60} h {minutes % 60} m"
