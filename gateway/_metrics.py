"""Prometheus-format metrics: counters the gateway bumps, rendered as text at `/metrics`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterRoom:
    """One cluster's room as the dispatcher accounts it (memory in bytes)."""

    cluster: str
    reserved: dict[str, float]
    """What placed and running attempts hold there."""
    free: dict[str, float] | None
    """What placement may still use there; None while no agent is connected."""
    attempts: int
    """How many attempts hold room there."""


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.events: Counter[str] = Counter()
        self.request_seconds = 0.0
        self.blob_bytes_received = 0
        """Blob bytes uploaded through the blob API (none when clients transfer straight to an object store)."""
        self.blob_bytes_sent = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.request_seconds += seconds

    def render(
        self, store_up: bool, watchers: int, clusters: Sequence[ClusterRoom] = (), blob_bytes_checked: int = 0
    ) -> str:
        lines = [
            "# HELP flyte_gateway_requests_total HTTP requests by method, route and status.",
            "# TYPE flyte_gateway_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f'flyte_gateway_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP flyte_gateway_request_seconds_total Time spent answering HTTP requests.",
            "# TYPE flyte_gateway_request_seconds_total counter",
            f"flyte_gateway_request_seconds_total {self.request_seconds:.6f}",
            "# HELP flyte_gateway_events_total Runs created, actions submitted and action transitions.",
            "# TYPE flyte_gateway_events_total counter",
        ]
        for event, count in sorted(self.events.items()):
            lines.append(f'flyte_gateway_events_total{{event="{event}"}} {count}')
        lines += [
            "# HELP flyte_gateway_store_up Whether the state store answers.",
            "# TYPE flyte_gateway_store_up gauge",
            f"flyte_gateway_store_up {int(store_up)}",
            "# HELP flyte_gateway_watchers Open watch streams.",
            "# TYPE flyte_gateway_watchers gauge",
            f"flyte_gateway_watchers {watchers}",
        ]
        lines += [
            "# HELP flyte_gateway_blob_bytes_total Blob bytes through the gateway: received and sent by its blob API,"
            " checked: read back from an object store to hash an upload no store checked.",
            "# TYPE flyte_gateway_blob_bytes_total counter",
            f'flyte_gateway_blob_bytes_total{{direction="received"}} {self.blob_bytes_received}',
            f'flyte_gateway_blob_bytes_total{{direction="sent"}} {self.blob_bytes_sent}',
            f'flyte_gateway_blob_bytes_total{{direction="checked"}} {blob_bytes_checked}',
        ]
        lines += _room(clusters)
        return "\n".join(lines) + "\n"


def _room(clusters: Sequence[ClusterRoom]) -> list[str]:
    lines: list[str] = []
    gauges: list[tuple[str, str, Callable[[ClusterRoom], dict[str, float]]]] = [
        ("reserved", "What placed and running attempts hold on a cluster", lambda room: room.reserved),
        ("free", "Room placement may still use on a connected cluster", lambda room: room.free or {}),
    ]
    for name, help_text, amounts in gauges:
        lines += [
            f"# HELP flyte_gateway_cluster_{name} {help_text} (memory in bytes).",
            f"# TYPE flyte_gateway_cluster_{name} gauge",
        ]
        for room in clusters:
            for resource, amount in sorted(amounts(room).items()):
                labels = f'cluster="{room.cluster}",resource="{resource}"'
                lines.append(f"flyte_gateway_cluster_{name}{{{labels}}} {_number(amount)}")
    lines += [
        "# HELP flyte_gateway_cluster_reserved_attempts Attempts holding room on a cluster.",
        "# TYPE flyte_gateway_cluster_reserved_attempts gauge",
    ]
    lines += [f'flyte_gateway_cluster_reserved_attempts{{cluster="{r.cluster}"}} {r.attempts}' for r in clusters]
    return lines


def _number(value: float) -> str:
    # `:g` would print 16 GiB as 1.71799e+10: whole numbers in full, the rest exactly.
    return str(int(value)) if value.is_integer() else repr(value)
