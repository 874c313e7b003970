"""`remote.Cluster`: the clusters a gateway federates (ours, beyond Flyte). Local mode has one: this process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._config import current_config


@dataclass(frozen=True)
class Cluster:
    name: str
    region: str
    cloud: str
    healthy: bool = True
    cordoned: bool = False
    cordon_reason: str | None = None
    draining: bool = False
    connected: bool = True
    capacity: Mapping[str, float] = field(default_factory=dict)
    free: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def listall(cls) -> list[Cluster]:
        """Every cluster registered with the gateway, as placement sees it now."""
        if not current_config().is_remote:
            return [cls(name="local", region="local", cloud="local")]
        from .._client import call_sync, client_for

        records = call_sync(client_for().list_clusters())
        return [
            cls(
                name=r.name,
                region=r.region,
                cloud=r.cloud,
                healthy=r.healthy,
                cordoned=r.cordoned,
                cordon_reason=r.cordon_reason,
                draining=r.draining,
                connected=r.connected,
                capacity=dict(r.capacity),
                free=dict(r.free),
                labels=dict(r.labels),
            )
            for r in records
        ]
