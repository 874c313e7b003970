"""What a run knows while it runs: its actions, their phases, trace checkpoints, and its outcome.

Local mode keeps this in memory and writes it into the run's metadata directory when the run ends; remote mode
will fill the same records from the gateway's watch stream. Phase changes are published to listeners (the CLI's
live progress) on the controller's event loop.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._codec import EncodedValue
from ._interface import EncodedInputs, TaskInterface
from ._wire import ActionSummary, ErrorInfo, NotificationRule, Phase, RunSummary, WireValue, wire_value_fields


@dataclass(slots=True)
class ActionRecord:
    """One action of a run: which task, where it sits in the tree, and how far it got."""

    name: str
    parent: str | None
    task: str
    group: str | None
    phase: Phase = Phase.QUEUED
    attempts: int = 0
    cached: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    error: ErrorInfo | None = None
    output: EncodedValue | None = None

    def summary_json(self) -> str:
        """The record as an `ActionSummary` JSON line; built by hand because runs hold thousands of actions."""
        return json.dumps(
            {
                "name": self.name,
                "parent": self.parent,
                "task": self.task,
                "group": self.group,
                "phase": self.phase.value,
                "attempts": self.attempts,
                "cached": self.cached,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "error": self.error.model_dump(mode="json") if self.error is not None else None,
                "output": wire_value_fields(self.output) if self.output is not None else None,
            }
        )


@dataclass(frozen=True)
class RunOptions:
    """What `flyte.with_runcontext` sets for one run."""

    name: str | None = None
    version: str | None = None
    project: str | None = None
    domain: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    overwrite_cache: bool = False
    disable_run_cache: bool = False
    queue: str | None = None
    max_action_concurrency: int | None = None
    custom_context: Mapping[str, str] = field(default_factory=dict)
    max_wait_seconds: float | None = None
    """How long an action of a remote run may stay queued before it fails (None: no limit)."""
    notifications: tuple[NotificationRule, ...] = ()
    """`flyte.notify` rules in wire form, sent by the gateway when a remote run ends (local runs send none)."""


class RunState:
    """The live state of one run."""

    def __init__(
        self,
        name: str,
        task_name: str,
        interface: TaskInterface,
        inputs: EncodedInputs,
        options: RunOptions,
        project: str,
        domain: str,
        metadata_dir: Path,
    ):
        self.name = name
        self.task_name = task_name
        self.interface = interface
        self.inputs = inputs
        self.options = options
        self.project = project
        self.domain = domain
        self.metadata_dir = metadata_dir
        self.created_at = time.time()
        self.ended_at: float | None = None
        self.phase = Phase.QUEUED
        self.actions: dict[str, ActionRecord] = {}
        self.phase_counts: Counter[Phase] = Counter()
        self.traces: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.output: EncodedValue | None = None
        self.error: ErrorInfo | None = None
        self.aborted_reason: str | None = None
        self.listeners: list[Callable[[ActionRecord], None]] = []
        self.finished = threading.Event()

    def add(self, record: ActionRecord) -> None:
        self.actions[record.name] = record
        self.phase_counts[record.phase] += 1
        self._publish(record)

    def move(self, record: ActionRecord, phase: Phase) -> None:
        """Advance an action's phase; terminal phases only change when a new attempt starts."""
        self.phase_counts[record.phase] -= 1
        self.phase_counts[phase] += 1
        record.phase = phase
        now = time.time()
        if phase is Phase.RUNNING and record.started_at is None:
            record.started_at = now
        if phase.is_terminal:
            record.ended_at = now
        self._publish(record)

    def _publish(self, record: ActionRecord) -> None:
        for listener in self.listeners:
            listener(record)

    def summary(self) -> RunSummary:
        return RunSummary(
            name=self.name,
            task=self.task_name,
            phase=self.phase,
            project=self.project,
            domain=self.domain,
            created_at=self.created_at,
            ended_at=self.ended_at,
            labels=dict(self.options.labels),
            inputs={k: WireValue.from_encoded(v) for k, v in self.inputs.values.items()},
            output=WireValue.from_encoded(self.output) if self.output is not None else None,
            error=self.error,
            action_count=len(self.actions),
        )

    def write_metadata(self) -> None:
        """Record the run where `Run.url` points: run.json and one line per action in actions.jsonl."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        (self.metadata_dir / "run.json").write_text(self.summary().model_dump_json(indent=2))
        if self.phase.is_terminal:
            with (self.metadata_dir / "actions.jsonl").open("w") as out:
                for record in self.actions.values():
                    out.write(record.summary_json())
                    out.write("\n")
            traces = {
                action: {key: [kind, base64.b64encode(payload).decode()] for key, (kind, payload) in recorded.items()}
                for action, recorded in self.traces.items()
            }
            (self.metadata_dir / "traces.json").write_text(json.dumps(traces))


def read_run_summary(metadata_dir: Path) -> RunSummary:
    return RunSummary.model_validate_json((metadata_dir / "run.json").read_text())


def read_traces(metadata_dir: Path) -> dict[str, dict[str, tuple[str, bytes]]]:
    path = metadata_dir / "traces.json"
    if not path.exists():
        return {}
    recorded: dict[str, dict[str, list[str]]] = json.loads(path.read_text())
    return {
        action: {key: (kind, base64.b64decode(payload)) for key, (kind, payload) in entries.items()}
        for action, entries in recorded.items()
    }


def read_action_summaries(metadata_dir: Path) -> list[ActionSummary]:
    path = metadata_dir / "actions.jsonl"
    if not path.exists():
        return []
    return [ActionSummary.model_validate_json(line) for line in path.read_text().splitlines() if line]
