"""`place(demand, snapshots, policy) -> Decision`: pure and deterministic, no I/O.

Hard filters (placement affinity and anti-affinity, queue pool, policy tier, size; then health, cordon, tier timing,
free room, project quota), then weighted scorers on the clusters of the earliest open tier that has room, with ties
broken by name. A demand no cluster could ever hold (even empty, healthy and uncordoned, with every tier open) is
`never_fits`, with a reason naming what is unmet; one that only has no room now waits with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._model import ClusterSnapshot, Decision, Demand
from ._policy import DEFAULT_POLICY, Compiled, Policy, compiled
from ._units import amount_text

_RESOURCES = ("cpu", "memory", "gpu")


def _needs(demand: Demand) -> tuple[tuple[str, float, str], ...]:
    """(snapshot key, amount, how to name it) for each resource the demand asks for."""
    out = []
    if demand.cpu > 0:
        out.append(("cpu", float(demand.cpu), f"cpu {demand.cpu:g}"))
    if demand.memory > 0:
        out.append(("memory", float(demand.memory), f"memory {amount_text('memory', demand.memory)}"))
    if demand.gpu > 0:
        if demand.gpu_type:
            out.append((f"gpu:{demand.gpu_type}", float(demand.gpu), f"gpu {demand.gpu_type}:{demand.gpu}"))
        else:
            out.append(("gpu", float(demand.gpu), f"gpu {demand.gpu}"))
    return tuple(out)


def _placement_checks(demand: Demand, cp: Compiled) -> list[tuple[str, Callable[[ClusterSnapshot], bool], str]]:
    """(what a cluster must satisfy, the check, the verdict when it does not) for each placement constraint."""
    d = demand
    checks: list[tuple[str, Callable[[ClusterSnapshot], bool], str]] = []
    if d.clusters:
        checks.append((f"is one of {list(d.clusters)}", lambda c: c.name in d.clusters, "not one of the clusters"))
    if d.avoid:
        checks.append((f"is not one of {list(d.avoid)}", lambda c: c.name not in d.avoid, "avoided"))
    if d.regions:
        checks.append((f"is in regions {list(d.regions)}", lambda c: c.region in d.regions, "region not allowed"))
    if d.clouds:
        checks.append((f"is in clouds {list(d.clouds)}", lambda c: c.cloud in d.clouds, "cloud not allowed"))
    for k, v in d.labels:
        checks.append((f"has label {k}={v}", lambda c, k=k, v=v: c.labels.get(k) == v, f"lacks label {k}={v}"))  # type: ignore[misc]
    for k, v in d.avoid_labels:
        checks.append((f"lacks label {k}={v}", lambda c, k=k, v=v: c.labels.get(k) != v, f"has avoided label {k}={v}"))  # type: ignore[misc]
    if d.queue is not None:
        q = d.queue
        checks.append(
            (
                f"is in queue pool {q!r}",
                lambda c: cp.in_queue(q, c.name, c.pools, c.labels),
                f"not in queue pool {q!r}",
            )
        )
    return checks


def _static_reason(demand: Demand, c: ClusterSnapshot, cp: Compiled) -> str | None:
    """Why a cluster can never take this demand because of where it may run, or None."""
    d = demand
    if d.clusters and c.name not in d.clusters:
        return f"not one of the clusters {list(d.clusters)}"
    if c.name in d.avoid:
        return "avoided"
    if d.regions and c.region not in d.regions:
        return f"region {c.region} not in {list(d.regions)}"
    if d.clouds and c.cloud not in d.clouds:
        return f"cloud {c.cloud} not in {list(d.clouds)}"
    labels = c.labels
    for k, v in d.labels:
        if labels.get(k) != v:
            return f"lacks label {k}={v}"
    for k, v in d.avoid_labels:
        if labels.get(k) == v:
            return f"has avoided label {k}={v}"
    queue = d.queue
    if queue is not None and queue not in c.pools and not cp.in_queue(queue, c.name, (), labels):
        return f"not in queue pool {queue!r}"
    return None


def _unmet(demand: Demand, snapshots: Sequence[ClusterSnapshot], cp: Compiled) -> str:
    """Name what no registered cluster satisfies, narrowing constraint by constraint (slow path only)."""
    pool = list(snapshots)
    seen: list[str] = []
    checks = _placement_checks(demand, cp)
    if cp.tiers:
        checks.append(
            ("is in a tier of the policy", lambda c: cp.tier_of(c.name, c.region, c.cloud, c.labels) >= 0, "")
        )
    for desc, ok, _ in checks:
        pool = [c for c in pool if ok(c)]
        if not pool:
            return f"no cluster {desc}" + (f" and {' and '.join(seen)}" if seen else "")
        seen.append(desc)
    where = f" that {' and '.join(seen)}" if seen else ""
    named: list[str] = []
    for key, amount, label in _needs(demand):
        named.append(label)
        pool = [c for c in pool if c.capacity.get(key, 0.0) >= amount]
        if not pool:
            return f"no cluster has {', '.join(named)}{where}"
    return "no cluster can ever run it"


def _quota(demand: Demand, cp: Compiled, usage: Mapping[str, Mapping[str, float]] | None) -> tuple[str, bool] | None:
    """(reason, never) when the project's quota stops this demand, else None."""
    project = cp.projects.get(demand.project)
    if project is None:
        return None
    used = (usage or {}).get(demand.project, {})
    for resource, limit, amount in zip(_RESOURCES, project[2], (demand.cpu, demand.memory, demand.gpu), strict=True):
        if limit is None or amount <= 0:
            continue
        if amount > limit:
            return f"project {demand.project} quota {resource} {limit:g} < demand {amount:g}", True
        if used.get(resource, 0.0) + amount > limit:
            in_use = used.get(resource, 0.0)
            return f"project {demand.project} over quota: {resource} {in_use:g} + {amount:g} > {limit:g}", False
    return None


def _waiting(verdicts: Mapping[str, str]) -> str:
    kinds: dict[str, int] = {}
    for v in verdicts.values():
        kind = v.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return "no cluster has room now (" + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + ")"


_STATIC_PASSES: dict[tuple[object, ...], tuple[Sequence[ClusterSnapshot], Compiled, dict[str, str], list[Any]]] = {}
_STATIC_PASSES_KEPT = 64


def _static_pass(
    d: Demand, snapshots: Sequence[ClusterSnapshot], cp: Compiled, has_static: bool
) -> tuple[dict[str, str], list[tuple[int, ClusterSnapshot]]]:
    """The clusters `d` may ever use by where they are (placement constraints, queue pool, policy tier), with their
    tier, and the verdicts of the others. These depend only on the demand's placement fields and each cluster's
    identity, not on its room, so they are computed once per snapshot list (a dispatcher pass, a bench round) for
    every demand with the same placement fields: most decisions of a fan-out share them."""
    key = (id(snapshots), id(cp), d.clusters, d.avoid, d.regions, d.clouds, d.labels, d.avoid_labels, d.queue)
    hit = _STATIC_PASSES.get(key)
    if hit is not None and hit[0] is snapshots and hit[1] is cp:
        return hit[2], hit[3]
    filtered: dict[str, str] = {}
    candidates: list[tuple[int, ClusterSnapshot]] = []
    for c in snapshots:
        if has_static and (why := _static_reason(d, c, cp)) is not None:
            filtered[c.name] = why
            continue
        tier = cp.tier_of(c.name, c.region, c.cloud, c.labels) if cp.tiers else 0
        if tier < 0:
            filtered[c.name] = "in no tier of the policy"
            continue
        candidates.append((tier, c))
    if len(_STATIC_PASSES) >= _STATIC_PASSES_KEPT:
        _STATIC_PASSES.clear()
    # The entry holds the list itself, so its id cannot be reused by another list while the entry lives.
    _STATIC_PASSES[key] = (snapshots, cp, filtered, candidates)
    return filtered, candidates


def place(
    demand: Demand,
    snapshots: Sequence[ClusterSnapshot],
    policy: Policy = DEFAULT_POLICY,
    *,
    usage: Mapping[str, Mapping[str, float]] | None = None,
) -> Decision:
    """Choose a cluster for `demand`. `usage` is what each project holds now (project -> cpu/memory/gpu), for quotas."""
    cp = compiled(policy)
    version = cp.version
    d = demand
    cpu_need = float(d.cpu) if d.cpu > 0 else 0.0
    mem_need = float(d.memory) if d.memory > 0 else 0.0
    gpu_need = float(d.gpu) if d.gpu > 0 else 0.0
    gpu_key = f"gpu:{d.gpu_type}" if d.gpu_type else "gpu"
    tiers = cp.tiers
    waited = d.waited_seconds
    has_static = bool(
        d.clusters or d.avoid or d.regions or d.clouds or d.labels or d.avoid_labels or d.queue is not None
    )
    w_warm, w_local, w_least, w_pack, w_cost, w_spread, w_data = cp.weights
    warm_key = d.warm_key if w_warm else None
    parent = d.parent_cluster if w_local else None
    by_load = bool(w_least or w_pack)
    keep_fits = bool(tiers or w_cost or (w_spread and d.spread_key is not None) or (w_data and d.input_bytes))
    pool_key = d.pool_key
    pool_slots = d.pool_concurrency * d.pool_max_replicas
    joins: set[str] = set()  # clusters where it joins a replica of its pool with a free slot: it needs no room
    # Clusters whose full pool may take it to wait there for a slot (`Policy.pool_queue_depth`), when none has room.
    waits_there: list[tuple[int, int, str]] = []  # (in flight, tier, name)
    queue_slots = pool_slots * cp.pool_queue_depth
    scores: dict[str, float] = {}
    fits: list[tuple[int, ClusterSnapshot]] = []
    could_ever = False
    if has_static or tiers:
        filtered, candidates = _static_pass(d, snapshots, cp, has_static)
        verdicts = dict(filtered)
    else:
        verdicts, candidates = {}, [(0, c) for c in snapshots]
    for tier, c in candidates:
        name = c.name
        # The fit test is written out twice (capacity: ever; free: now) rather than shared through a helper: this
        # loop runs once per cluster per decision, and a call per test costs a tenth of the budget at 1,000 clusters.
        cap = c.capacity
        cap_cpu = cap.get("cpu", 0.0)
        if (
            cap_cpu < cpu_need
            or (mem_need and cap.get("memory", 0.0) < mem_need)
            or (gpu_need and cap.get(gpu_key, 0.0) < gpu_need)
        ):
            verdicts[name] = "too small: " + _shortage(d, cap)
            continue
        could_ever = True
        if not c.healthy:
            verdicts[name] = "unhealthy"
            continue
        if c.cordoned:
            verdicts[name] = "cordoned"
            continue
        if tiers and tiers[tier].after > waited:
            closed = tiers[tier]
            verdicts[name] = f"tier closed: {closed.name} opens after {closed.after:g}s, queued {waited:g}s"
            continue
        free = c.free
        free_cpu = free.get("cpu", 0.0)
        joining = False
        if pool_key is not None:
            in_flight = c.pool_in_flight.get(pool_key, 0)
            if in_flight >= pool_slots:
                verdicts[name] = f"busy: its pool is full ({in_flight} of {pool_slots} slots in flight)"
                if in_flight < queue_slots:
                    waits_there.append((in_flight, tier, name))
                continue
            if in_flight % d.pool_concurrency:
                joining = True
                joins.add(name)
        if not joining and (
            free_cpu < cpu_need
            or (mem_need and free.get("memory", 0.0) < mem_need)
            or (gpu_need and free.get(gpu_key, 0.0) < gpu_need)
        ):
            verdicts[name] = "busy: " + _shortage(d, free)
            continue
        verdicts[name] = "fits"
        s = 0.0
        if warm_key and (joining or c.warm.get(warm_key, 0) > 0):
            s = w_warm
        if parent is not None and name == parent:
            s += w_local
        if by_load:
            cpu_cap = cap_cpu or 1.0
            f = free_cpu / cpu_cap
            if w_least:
                s += w_least * (0.0 if f < 0.0 else 1.0 if f > 1.0 else f)
            if w_pack:
                u = 1.0 - f + cpu_need / cpu_cap
                s += w_pack * (0.0 if u < 0.0 else 1.0 if u > 1.0 else u)
        scores[name] = s
        if keep_fits:
            fits.append((tier, c))

    if not could_ever:
        if not snapshots:
            return Decision(None, False, "no cluster is registered", verdicts, {}, version)
        return Decision(None, True, _unmet(d, snapshots, cp), verdicts, {}, version)
    quota = _quota(d, cp, usage)
    if quota is not None and quota[1]:
        return Decision(None, True, quota[0], verdicts, {}, version)
    if not scores and waits_there:
        # Nothing has room now: it waits for a slot on the agent whose pool has the fewest waiting (joining a
        # replica, it adds nothing to what its project holds), rather than in the gateway's queue.
        in_flight, tier, best_name = min(waits_there)
        verdicts[best_name] = f"chosen: waits there for a slot ({in_flight} of {pool_slots} slots in flight)"
        tier_name = cp.tiers[tier].name if tiers else None
        reason = f"placed on {best_name}, to wait there for a slot of its pool"
        return Decision(best_name, False, reason, verdicts, {best_name: 0.0}, version, tier_name)
    if not scores:
        return Decision(None, False, _waiting(verdicts), verdicts, {}, version)
    if quota is not None:
        # Joining a pool's replica adds nothing to what the project holds: only those clusters stay.
        for name in [n for n in scores if n not in joins]:
            verdicts[name] = "fits, over quota: " + quota[0]
            del scores[name]
        if not scores:
            return Decision(None, False, quota[0], verdicts, {}, version)
        fits = [(t, c) for t, c in fits if c.name in scores]

    tier_name = None
    if tiers:
        best_tier = min(t for t, _ in fits)
        tier_name = tiers[best_tier].name
        if any(t != best_tier for t, _ in fits):
            later = [f"fits, later tier: {t.name} after {tier_name}" for t in tiers]
            for t, c in fits:
                if t != best_tier:
                    verdicts[c.name] = later[t]
                    del scores[c.name]
            fits = [(t, c) for t, c in fits if t == best_tier]
    if w_cost:
        costs = [d.cpu * c.cost_per_cpu_hour + d.gpu * c.cost_per_gpu_hour for _, c in fits]
        _add_normalised(scores, [c.name for _, c in fits], costs, w_cost)
    if w_spread and d.spread_key is not None:
        key = d.spread_key
        counts = [float(c.placed_counts.get(key, 0)) for _, c in fits]
        _add_normalised(scores, [c.name for _, c in fits], counts, w_spread)
    if w_data and d.input_bytes:
        crossing = [float(bytes_crossing(d, c.region)) for _, c in fits]
        _add_normalised(scores, [c.name for _, c in fits], crossing, w_data)

    top = max(scores.values())
    best_name = min(n for n, s in scores.items() if s == top)
    verdicts[best_name] = "chosen"
    reason = f"placed on {best_name}" + (f" (tier {tier_name})" if tier_name is not None else "")
    return Decision(best_name, False, reason, verdicts, scores, version, tier_name)


def bytes_crossing(demand: Demand, region: str) -> int:
    """The bytes of `demand`'s input blobs a cluster in `region` would read from another region's store."""
    return sum(size for where, size in demand.input_bytes if where != region)


def _add_normalised(scores: dict[str, float], names: list[str], values: list[float], weight: float) -> None:
    """Add `weight` x (1 for the lowest value .. 0 for the highest; 1 for all when they are equal)."""
    lo, hi = min(values), max(values)
    span = hi - lo
    for name, v in zip(names, values, strict=True):
        scores[name] += weight * ((hi - v) / span if span else 1.0)


def _shortage(d: Demand, amounts: Mapping[str, float]) -> str:
    """The first resource of `d` that `amounts` lacks, as "cpu 4 > 2"."""
    for key, amount, _ in _needs(d):
        if (have := amounts.get(key, 0.0)) < amount:
            return f"{key} {amount_text(key, amount)} > {amount_text(key, have)}"
    return ""
