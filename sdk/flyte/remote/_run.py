"""`remote.Run`: finished and running runs, read from where their records are kept."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._config import current_config
from .._paths import runs_dir
from .._run_state import read_action_summaries, read_run_summary
from .._wire import ErrorInfo, Phase, RunSummary
from ._action import Action


@dataclass(frozen=True)
class Run:
    """A recorded run."""

    name: str
    task: str
    phase: Phase
    url: str
    created_at: float
    ended_at: float | None
    error: ErrorInfo | None

    @classmethod
    def _from(cls, summary: RunSummary, path: Path) -> Run:
        return cls(
            summary.name, summary.task, summary.phase, str(path), summary.created_at, summary.ended_at, summary.error
        )

    @classmethod
    def _from_gateway(cls, summary: RunSummary) -> Run:
        endpoint = current_config().endpoint or ""
        return cls(
            summary.shown_name,
            summary.task,
            summary.phase,
            f"{endpoint}/runs/{summary.name}",
            summary.created_at,
            summary.ended_at,
            summary.error,
        )

    @classmethod
    def get(cls, name: str) -> Run:
        if current_config().is_remote:
            from .._client import call_sync, client_for

            return cls._from_gateway(call_sync(client_for().get_run(name)))
        path = runs_dir() / name
        if not (path / "run.json").exists():
            raise LookupError(f"no run named {name!r} in {runs_dir()}")
        return cls._from(read_run_summary(path), path)

    @classmethod
    def listall(
        cls,
        in_phase: Phase | str | tuple[Phase | str, ...] | None = None,
        task_name: str | None = None,
        limit: int = 100,
    ) -> Iterator[Run]:
        """Runs, newest first, optionally only in some phases or of one task."""
        phases = {Phase(p) for p in ((in_phase,) if isinstance(in_phase, (str, Phase)) else in_phase or ())}
        if current_config().is_remote:
            from .._client import call_sync, client_for

            phase = next(iter(phases)) if len(phases) == 1 else None
            for summary in call_sync(client_for().list_runs(phase=phase, task=task_name, limit=limit)):
                if not phases or summary.phase in phases:
                    yield cls._from_gateway(summary)
            return
        paths = sorted(runs_dir().glob("*/run.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        count = 0
        for path in paths:
            if count >= limit:
                return
            summary = read_run_summary(path.parent)
            if phases and summary.phase not in phases:
                continue
            if task_name and summary.task != task_name:
                continue
            count += 1
            yield cls._from(summary, path.parent)

    def actions(self) -> list[Action]:
        if current_config().is_remote:
            from .._client import call_sync, client_for

            return [Action._from(s) for s in call_sync(client_for().list_actions(self.name))]
        return [Action._from(s) for s in read_action_summaries(Path(self.url))]
