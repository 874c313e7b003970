"""Prometheus-format metrics: counters the gateway bumps, rendered as text at `/metrics`."""

from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.events: Counter[str] = Counter()
        self.request_seconds = 0.0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.request_seconds += seconds

    def render(self, store_up: bool, watchers: int) -> str:
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
        return "\n".join(lines) + "\n"
