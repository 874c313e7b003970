"""Retention: ended runs older than their project's retention are deleted, with everything keyed by them, and blobs
nothing retained refers to are collected.

What belongs to a run is found from its record alone, through `run_keys` and `run_prefixes` (its logs are keys too,
under `/flyte/logs/`): a change of key layout (say, runs named per project) is a change to those two functions and
nothing else. A run is deleted children first and its record last, in transactions of at most `BATCH` keys (shared
by small runs) with a yield to the event loop between them, so the API stays responsive and a gateway that dies
half-way finds the record still there and finishes the job on its next pass. Running runs are never touched: only a
run whose record says it ended (a terminal phase and an `ended_at`) is a candidate.

Blobs are collected by mark and sweep. Mark: every 64-hex-digit string in a value under the prefixes that can refer
to a blob (runs, actions, task versions, the cache, traces), inline pickles decoded, then every such string inside
the marked blobs themselves, transitively (a directory's manifest names its files); a stray match only keeps a blob
longer. Sweep: a blob
not marked whose file is older than the grace period is deleted. The grace period covers a blob uploaded (or found
present, which refreshes its time: see `BlobStore.exists`) for a run whose record the mark did not see yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from flyte._wire import ActionSummary, Phase, RunSummary
from gateway._blobs import BlobStore, BlobStoreUnavailable
from gateway._keys import (
    ACTIONS,
    CACHE,
    RUNS,
    TASKS,
    TRACES,
    actions_prefix,
    blob_owners_key,
    cache_entry_key,
    conditions_prefix,
    deliveries_key,
    idempotency_key,
    logs_prefix,
    notify_rules_key,
    placements_prefix,
    run_key,
    spans_prefix,
    traces_prefix,
)
from gateway._runs import decode_run
from gateway.store import Delete, KeyValue, Store, StoreError

log = logging.getLogger("flyte.gateway.retention")

BATCH = 100
"""Keys deleted per transaction (etcd allows 128 operations in one)."""
BLOB_GRACE = 3600.0
"""Seconds an unreferenced blob is kept after it was last written or looked at."""
_ENDED = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED})
_DIGEST = re.compile(rb"[0-9a-f]{64}")
_PICKLE_B64 = re.compile(rb'"pickle_b64":\s*"([A-Za-z0-9+/=]+)"')
_PAGE = 500
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")
_REFERRING = (RUNS, ACTIONS, TASKS, CACHE, TRACES)
"""Prefixes whose values may name a blob; spans, placements and sessions never do."""
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '15m', '30s', '2w' (or plain seconds) as seconds; a `ValueError` names the bad text."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a retention is a positive number with a unit s, m, h, d or w (e.g. 30d), not {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Retention:
    """How long ended runs are kept, and how unreferenced blobs are collected."""

    runs: float | None = None
    """Seconds an ended run is kept after it ended; None keeps runs forever (projects may still set their own)."""
    projects: Mapping[str, float] = field(default_factory=dict)
    """Per-project retention in seconds, overriding `runs` for that project."""
    blob_grace: float = BLOB_GRACE
    every: float | None = None
    """Seconds between passes; by default a quarter of the shortest retention, between 1 s and 10 minutes."""

    def __post_init__(self) -> None:
        for name, seconds in [("runs", self.runs), *self.projects.items()]:
            if seconds is not None and seconds <= 0:
                raise ValueError(f"retention of {name} must be positive, not {seconds}")
        if self.blob_grace < 0:
            raise ValueError(f"blob_grace must be >= 0, not {self.blob_grace}")

    @property
    def enabled(self) -> bool:
        return self.runs is not None or bool(self.projects)

    @property
    def interval(self) -> float:
        if self.every is not None:
            return self.every
        shortest = min([s for s in [self.runs, *self.projects.values()] if s is not None], default=600.0)
        return min(max(shortest / 4, 1.0), 600.0)

    def kept_for(self, project: str) -> float | None:
        return self.projects.get(project, self.runs)

    def expired(self, run: RunSummary, now: float) -> bool:
        kept = self.kept_for(run.project)
        return kept is not None and run.phase in _ENDED and run.ended_at is not None and run.ended_at + kept < now


def parse_project_retention(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`NAME=DURATION` options as a mapping; a `ValueError` names the bad item."""
    projects: dict[str, float] = {}
    for item in items:
        name, sep, duration = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--retain-project takes NAME=DURATION (e.g. scratch=1d), not {item!r}")
        projects[name.strip()] = parse_duration(duration)
    return projects


# -- what belongs to a run (its keys are spelled in gateway._keys) ----------------------------------------------


def run_keys(run: RunSummary) -> list[str]:
    """Single keys of a run, deleted last: its notification rules (still there if a delivery was pending), its
    notification deliveries, the idempotency key (if any), then the run record itself. The rules go first: a pass
    stopped after them leaves a notifier nothing to send again (rules beside a run would be sent anew)."""
    keys = [notify_rules_key(run.name), deliveries_key(run.name)]
    if run.idempotency_key is not None:
        digest = hashlib.sha256(run.idempotency_key.encode()).hexdigest()
        keys.append(idempotency_key(run.project, run.domain, digest))
    return [*keys, run_key(run.name)]


def run_prefixes(run: RunSummary) -> list[str]:
    """Prefixes holding a run's many keys: placement records, spans, trace records, conditions, logs, and its
    actions (last)."""
    return [
        placements_prefix(run.name),
        logs_prefix(run.name),
        spans_prefix(run.name),
        traces_prefix(run.name),
        conditions_prefix(run.name),
        actions_prefix(run.name),
    ]


# -- deleting ------------------------------------------------------------------------------------------------------


class _Deleter:
    """Deletes keys in the order they are added, in transactions of `BATCH` keys with a yield between them; keys of
    several small runs share a transaction, so a pass over thousands of ended runs costs few commits."""

    def __init__(self, store: Store):
        self.store = store
        self.deleted = 0
        self._pending: dict[str, None] = {}
        """Insertion-ordered and without repeats: a transaction must not name a key twice."""

    async def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._pending[key] = None
            if len(self._pending) >= BATCH:
                await self.flush()

    async def flush(self) -> None:
        if self._pending:
            await self.store.txn([], [Delete(k) for k in self._pending])
            self.deleted += len(self._pending)
            self._pending.clear()
            await asyncio.sleep(0)

    async def add_prefix(self, prefix: str, also: Callable[[KeyValue], Awaitable[str | None]] | None = None) -> None:
        """Every key under `prefix` (with, before each, the key `also` names for it, if any)."""
        while True:
            kvs, _ = await self.store.range(prefix, limit=BATCH)
            for kv in kvs:
                extra = await also(kv) if also is not None else None
                await self.add([kv.key] if extra is None else [extra, kv.key])
            if len(kvs) < BATCH:
                return
            # A full page: what it named must be gone before the next range can see past it.
            await self.flush()


async def _cache_entry_written(store: Store, kv: KeyValue) -> str | None:
    """The cache entry this action wrote, if its output is still the entry's value: a cached output lives as long
    as the run that computed it, so the cache cannot keep blobs of deleted runs forever."""
    action = ActionSummary.model_validate_json(kv.value)
    if not action.cache_key or action.output is None or action.cached:
        return None
    entry = await store.get(cache_entry_key(action.cache_key))
    if entry is None or entry.value != action.output.model_dump_json().encode():
        return None
    return cache_entry_key(action.cache_key)


async def _delete_run(deleter: _Deleter, run: RunSummary) -> None:
    store = deleter.store
    for prefix in run_prefixes(run):
        also = functools.partial(_cache_entry_written, store) if prefix == actions_prefix(run.name) else None
        await deleter.add_prefix(prefix, also)
    await deleter.add([key for key in run_keys(run) if await store.get(key) is not None])


async def delete_run(store: Store, run: RunSummary) -> int:
    """Delete a run and everything keyed by it; returns the number of keys deleted. Safe to repeat."""
    deleter = _Deleter(store)
    await _delete_run(deleter, run)
    await deleter.flush()
    return deleter.deleted


async def expired_runs(store: Store, retention: Retention, now: float) -> list[RunSummary]:
    # Read in pages: a store with a million runs must not arrive as one response (etcd's gRPC limit) or one list.
    expired = []
    async for _, kvs in store.snapshot(RUNS, page=_PAGE):
        expired += [run for run in map(decode_run, kvs) if retention.expired(run, now)]
    return expired


async def retain_once(store: Store, retention: Retention, now: float) -> tuple[int, int]:
    """One pass over the runs; returns (runs deleted, keys deleted)."""
    runs = await expired_runs(store, retention, now)
    deleter = _Deleter(store)
    for run in runs:
        await _delete_run(deleter, run)
    await deleter.flush()
    return len(runs), deleter.deleted


# -- blobs ---------------------------------------------------------------------------------------------------------


def _digests_in(data: bytes) -> set[str]:
    """Digests named in a value: in plain text, and inside inline pickles (base64 would hide a `File`'s URI)."""
    found = {m.decode() for m in _DIGEST.findall(data)}
    for encoded in _PICKLE_B64.findall(data):
        with contextlib.suppress(binascii.Error, ValueError):
            found.update(m.decode() for m in _DIGEST.findall(base64.b64decode(encoded)))
    return found


async def _digests_in_blob(blobs: BlobStore, digest: str) -> frozenset[str]:
    found: set[str] = set()
    tail = b""
    async for chunk in blobs.chunks(digest):
        # Overlap the chunks by a digest's length, so a digest split across two reads is still seen.
        window = tail + chunk
        found.update(m.decode() for m in _DIGEST.findall(window))
        tail = window[-63:]
    return frozenset(found)


class BlobMarker:
    """The mark phase: digests the store's retained values name, and, transitively, digests named inside those
    blobs (a directory's manifest, a large value holding a `File`). A blob's content never changes, so what it
    names is read once per gateway process and remembered."""

    def __init__(self, blobs: BlobStore):
        self.blobs = blobs
        self._inside: dict[str, frozenset[str]] = {}

    async def mark(self, store: Store) -> set[str]:
        marked: set[str] = set()
        for prefix in _REFERRING:
            async for _, kvs in store.snapshot(prefix, page=_PAGE):
                for kv in kvs:
                    marked.update(_digests_in(kv.value))
        frontier = list(marked)
        while frontier:
            digest = frontier.pop()
            inside = self._inside.get(digest)
            if inside is None:
                inside = await _digests_in_blob(self.blobs, digest)
                self._inside[digest] = inside
            for named in inside - marked:
                marked.add(named)
                frontier.append(named)
        # Forget what was learnt about blobs that are gone, so the memo stays as small as the blob directory.
        for digest in [d for d in self._inside if d not in marked]:
            del self._inside[digest]
        return marked


async def collect_blobs(store: Store, marker: BlobMarker, grace: float, now: float | None = None) -> int:
    """Delete blobs no retained run, action, task version, cache entry or trace names; returns how many."""
    # The time is taken before the mark: a blob touched after it is younger than the cut-off whatever the mark saw.
    cutoff = (time.time() if now is None else now) - grace
    marked = await marker.mark(store)
    removed = await marker.blobs.sweep(marked, cutoff)
    # Which projects may read a blob goes with it: bytes uploaded again later start with no readers but the uploader.
    for start in range(0, len(removed), BATCH):
        await store.txn([], [Delete(blob_owners_key(digest)) for digest in removed[start : start + BATCH]])
    return len(removed)


async def retain_forever(store: Store, retention: Retention, blobs: BlobStore) -> None:
    """The gateway's background task: a retention pass, then a blob collection, every `retention.interval`."""
    marker = BlobMarker(blobs)
    while True:
        await asyncio.sleep(retention.interval)
        try:
            runs, keys = await retain_once(store, retention, time.time())
            blobs_removed = await collect_blobs(store, marker, retention.blob_grace)
        except (StoreError, BlobStoreUnavailable) as error:
            log.warning("retention pass skipped: %s", error)
            continue
        if runs or blobs_removed:
            log.info("retention: deleted %d runs (%d keys) and %d blobs", runs, keys, blobs_removed)
