"""What-if: replay recorded decisions under another policy and count what would change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._model import ClusterSnapshot, Demand
from ._place import bytes_crossing, place
from ._policy import Policy
from ._replay import demand_from_dict, snapshot_from_dict


@dataclass(frozen=True)
class Recorded:
    """One recorded decision: what it saw and where it went (None: it waited or never fit)."""

    demand: Mapping[str, Any]
    snapshots: list[Mapping[str, Any]]
    cluster: str | None
    never_fits: bool = False


@dataclass
class Outcome:
    """Where decisions went, under one policy."""

    placed: Counter[str] = field(default_factory=Counter)
    waiting: int = 0
    never_fits: int = 0
    cost_per_hour: float = 0.0
    """Sum over placed decisions of what their demand costs per hour on the chosen cluster."""
    regions: Counter[str] = field(default_factory=Counter)
    bytes_crossing: int = 0
    """Sum over placed decisions of the input bytes the chosen cluster reads from another region's store."""

    def spread(self) -> float:
        """The largest share of placed decisions in one region (1.0: all in one; lower: more spread)."""
        total = sum(self.regions.values())
        return max(self.regions.values()) / total if total else 0.0


@dataclass
class Simulation:
    replayed: int = 0
    skipped: int = 0
    """Recorded without snapshots (too many clusters to keep): nothing to replay."""
    changed: int = 0
    before: Outcome = field(default_factory=Outcome)
    after: Outcome = field(default_factory=Outcome)
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(before, after) cluster, or "(waits)" / "(never fits)", for each changed decision."""


def simulate(records: Iterable[Recorded], policy: Policy) -> Simulation:
    """Replay each record under `policy` on the snapshots it was decided on."""
    sim = Simulation()
    for record in records:
        if not record.snapshots:
            sim.skipped += 1
            continue
        demand = demand_from_dict(record.demand)
        snapshots = [snapshot_from_dict(s) for s in record.snapshots]
        decision = place(demand, snapshots, policy)
        sim.replayed += 1
        _count(sim.before, demand, snapshots, record.cluster, record.never_fits)
        _count(sim.after, demand, snapshots, decision.cluster, decision.never_fits)
        was, now = _where(record.cluster, record.never_fits), _where(decision.cluster, decision.never_fits)
        if was != now:
            sim.changed += 1
            sim.moves[(was, now)] += 1
    return sim


def _where(cluster: str | None, never_fits: bool) -> str:
    return cluster if cluster is not None else "(never fits)" if never_fits else "(waits)"


def _count(
    outcome: Outcome, demand: Demand, snapshots: list[ClusterSnapshot], cluster: str | None, never_fits: bool
) -> None:
    chosen = next((s for s in snapshots if s.name == cluster), None) if cluster is not None else None
    if chosen is None:
        if never_fits:
            outcome.never_fits += 1
        else:
            outcome.waiting += 1
        return
    outcome.placed[chosen.name] += 1
    outcome.regions[chosen.region] += 1
    outcome.cost_per_hour += demand.cpu * chosen.cost_per_cpu_hour + demand.gpu * chosen.cost_per_gpu_hour
    outcome.bytes_crossing += bytes_crossing(demand, chosen.region)
