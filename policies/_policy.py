"""The placement policy: a validated pydantic model, loaded from YAML with errors naming the line and field, and
compiled once into plain tuples so `place` never touches pydantic in its hot path."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Model):
    """Scorer weights (>= 0). Each scorer gives 0..1; a cluster's score is the weighted mean."""

    warm: float = Field(default=2.0, ge=0)
    locality: float = Field(default=0.0, ge=0)
    least_loaded: float = Field(default=1.0, ge=0)
    bin_packing: float = Field(default=0.0, ge=0)
    cost: float = Field(default=0.0, ge=0)
    spread: float = Field(default=0.0, ge=0)
    data_locality: float = Field(default=0.0, ge=0)
    """Prefer clusters in the region that already holds the action's input blobs (by the bytes that would cross)."""


class Tier(_Model):
    """A fallback tier: the clusters it matches (globs; empty matches all) become eligible after `after_seconds`."""

    name: str = Field(min_length=1)
    regions: tuple[str, ...] = ()
    clouds: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    after_seconds: float = Field(default=0.0, ge=0)


class Quota(_Model):
    cpu: float | None = Field(default=None, ge=0)
    memory: float | None = Field(default=None, ge=0)
    gpu: float | None = Field(default=None, ge=0)


class Project(_Model):
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0
    quota: Quota = Quota()


class Policy(_Model):
    version: str = Field(min_length=1)
    weights: Weights = Weights()
    tiers: tuple[Tier, ...] = ()
    queues: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Queue name -> members: cluster names (globs) or `key=value` label selectors."""
    projects: dict[str, Project] = Field(default_factory=dict)
    pool_queue_depth: int = Field(default=1, ge=1, le=64)
    """Actions a reusable pool may be given per slot of its replicas, the rest waiting on its agent for a free slot,
    when no cluster has room for them now. 1 (the default): an action whose pool is full waits in the gateway's
    queue. More: a wide fan-out's children are placed as they are submitted, written once rather than queued then
    placed (`docs/placement.md`, "Waiting on the agent")."""

    @field_validator("tiers")
    @classmethod
    def _unique_tiers(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        names = [t.name for t in tiers]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"tier names must be unique, repeated: {dupes}")
        return tiers


DEFAULT_POLICY = Policy(version="default")
"""Filters, then a warm pool first, then the most free CPU fraction; ties by name."""


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; a bad one raises ValueError naming the file, line and field."""
    path = Path(path)
    return parse_policy(path.read_text(), path.name)


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Validate a policy document (YAML); a bad one raises ValueError naming `source`, the line and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{source}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} line 1: the policy must be a mapping, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        root = yaml.compose(text)
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(policy)"
            lines.append(f"{source} line {_line_of(root, loc)}: field {dotted}: {err['msg']}")
        raise ValueError("\n".join(lines)) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest node along `loc` (the key's line for a mapping entry)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# --- compiled form ---------------------------------------------------------------------------------------------


def _matcher(patterns: tuple[str, ...]) -> tuple[frozenset[str], re.Pattern[str] | None]:
    exact = frozenset(p for p in patterns if not any(ch in p for ch in "*?["))
    globs = [fnmatch.translate(p) for p in patterns if p not in exact]
    return exact, re.compile("|".join(globs)) if globs else None


def _matches(m: tuple[frozenset[str], re.Pattern[str] | None], value: str) -> bool:
    return value in m[0] or (m[1] is not None and m[1].match(value) is not None)


@dataclass(frozen=True)
class CompiledTier:
    name: str
    after: float
    regions: tuple[frozenset[str], re.Pattern[str] | None] | None
    clouds: tuple[frozenset[str], re.Pattern[str] | None] | None
    clusters: tuple[frozenset[str], re.Pattern[str] | None] | None
    labels: tuple[tuple[str, str], ...]

    def matches(self, name: str, region: str, cloud: str, labels: Mapping[str, str]) -> bool:
        return (
            (self.clusters is None or _matches(self.clusters, name))
            and (self.regions is None or _matches(self.regions, region))
            and (self.clouds is None or _matches(self.clouds, cloud))
            and all(labels.get(k) == v for k, v in self.labels)
        )


@dataclass(frozen=True)
class CompiledQueue:
    names: tuple[frozenset[str], re.Pattern[str] | None]
    selectors: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Compiled:
    """A policy read once into plain values."""

    version: str
    weights: tuple[float, float, float, float, float, float, float]
    """warm, locality, least_loaded, bin_packing, cost, spread: each divided by their sum (all 0 if the sum is 0)."""
    tiers: tuple[CompiledTier, ...]
    tiers_use_labels: bool
    queues: Mapping[str, CompiledQueue]
    projects: Mapping[str, tuple[float, int, tuple[float | None, float | None, float | None]]]
    """project -> (weight, priority, (quota cpu, memory, gpu))."""
    pool_queue_depth: int = 1
    tier_cache: dict[tuple[str, str, str], int] = field(default_factory=dict, compare=False)

    def tier_of(self, name: str, region: str, cloud: str, labels: Mapping[str, str]) -> int:
        """Index of the first tier matching the cluster, -1 for none (always 0 when the policy has no tiers)."""
        if not self.tiers:
            return 0
        key = (name, region, cloud)
        if not self.tiers_use_labels and (hit := self.tier_cache.get(key)) is not None:
            return hit
        index = next((i for i, t in enumerate(self.tiers) if t.matches(name, region, cloud, labels)), -1)
        if not self.tiers_use_labels:
            if len(self.tier_cache) > 100_000:
                self.tier_cache.clear()
            self.tier_cache[key] = index
        return index

    def in_queue(self, queue: str, name: str, pools: tuple[str, ...], labels: Mapping[str, str]) -> bool:
        if queue in pools:
            return True
        q = self.queues.get(queue)
        if q is None:
            return False
        return _matches(q.names, name) or any(labels.get(k) == v for k, v in q.selectors)


def _compile(policy: Policy) -> Compiled:
    w = policy.weights
    raw = (w.warm, w.locality, w.least_loaded, w.bin_packing, w.cost, w.spread, w.data_locality)
    total = sum(raw)
    weights = tuple(x / total for x in raw) if total > 0 else (0.0,) * len(raw)
    tiers = tuple(
        CompiledTier(
            name=t.name,
            after=t.after_seconds,
            regions=_matcher(t.regions) if t.regions else None,
            clouds=_matcher(t.clouds) if t.clouds else None,
            clusters=_matcher(t.clusters) if t.clusters else None,
            labels=tuple(sorted(t.labels.items())),
        )
        for t in policy.tiers
    )
    queues = {}
    for qname, members in policy.queues.items():
        selectors = tuple(tuple(m.split("=", 1)) for m in members if "=" in m)
        names = tuple(m for m in members if "=" not in m)
        queues[qname] = CompiledQueue(_matcher(names), selectors)  # type: ignore[arg-type]
    projects = {
        name: (p.weight, p.priority, (p.quota.cpu, p.quota.memory, p.quota.gpu)) for name, p in policy.projects.items()
    }
    return Compiled(
        version=policy.version,
        weights=weights,  # type: ignore[arg-type]
        tiers=tiers,
        tiers_use_labels=any(t.labels for t in tiers),
        queues=queues,
        projects=projects,
        pool_queue_depth=policy.pool_queue_depth,
    )


_COMPILED: dict[int, tuple[Policy, Compiled]] = {}


def compiled(policy: Policy) -> Compiled:
    """The compiled form of `policy`, memoised by identity (policies are frozen)."""
    hit = _COMPILED.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    c = _compile(policy)
    _COMPILED[id(policy)] = (policy, c)
    return c
