"""`remote.Cluster`: the clusters a gateway federates (ours, beyond Flyte). Local mode has one: this process."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import current_config


@dataclass(frozen=True)
class Cluster:
    name: str
    region: str
    cloud: str
    healthy: bool = True
    cordoned: bool = False

    @classmethod
    def listall(cls) -> list[Cluster]:
        if current_config().is_remote:
            raise NotImplementedError("listing a gateway's clusters needs the gateway issue")
        return [cls(name="local", region="local", cloud="local")]
