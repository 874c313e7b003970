"""Authorisation: one function decides what each kind of token may do, for the HTTP routes and both WebSockets.

    token \\ act     read  run/abort  deploy  submit/watch  report  checkpoint  agent event/logs  spans  blobs  signal
    admin           all   all        all     all           all     all         all               all    all    all
    deploy          proj  -          proj    -             -       -           -                 -      proj   -
    run             proj  proj       -       watch only    -       read        -                 -      proj   proj
    worker          run   -          -       own action    own     own action  -                 run    proj   -
    agent:C         -     -          -       -             -       -           placed on C       C's    C's work -

(`proj`: the token's projects; a worker acts only for the attempt its token names, an agent only for attempts placed
on its own cluster.) `docs/security.md` has the same table in words. The caller loads what the decision needs into a
`Target` (the action as stored, the cluster an attempt was placed on); `authorize` itself reads nothing, so it is
the same decision whichever channel asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flyte._wire import ActionSummary, Phase
from gateway._auth import Principal
from gateway._domain_errors import Forbidden


class Act(StrEnum):
    READ = "read"
    """A run, its actions, watch, trace and logs; the task registry of a project."""
    CREATE_RUN = "create run"
    ABORT_RUN = "abort run"
    DEPLOY = "deploy"
    SUBMIT = "submit child"
    """A child action under `Target.action` (the parent)."""
    WATCH_CHILDREN = "watch children"
    REPORT = "report"
    """A worker's state change of `Target.action` at `Target.attempt`."""
    CHECKPOINT_WRITE = "write checkpoint"
    CHECKPOINT_READ = "read checkpoints"
    AGENT_EVENT = "agent event"
    AGENT_LOGS = "agent logs"
    SPANS = "spans"
    BLOB_WRITE = "write blob"
    BLOB_READ = "read blob"
    READ_TASK = "read task"
    """A deployed task's spec (agents fetch it for the attempts they were given)."""
    SIGNAL = "signal condition"
    """Give a waiting condition of a run its value (`flyte signal condition`)."""


@dataclass(frozen=True)
class Target:
    """What an act is about: as much as the decision needs, loaded by the caller."""

    project: str | None = None
    run: str | None = None
    action: str | None = None
    """The action acted on (report, checkpoints, agent events) or the parent (submit, watch)."""
    attempt: int | None = None
    current: ActionSummary | None = None
    """The action as stored, for an agent's event."""
    event_phase: Phase | None = None
    """The phase an agent's event reports (a late `running` only dates the start of an attempt that has ended)."""
    placed_on: str | None = None
    """The cluster the attempt was placed on (an agent's logs, which may come after the action moved on)."""
    projects: frozenset[str] = frozenset()
    """A blob's projects (those that wrote or were given it)."""
    agent_projects: frozenset[str] = frozenset()
    """The projects of the work the calling agent's session was given."""


_READERS = frozenset({"deploy", "run"})
_BY_SCOPE: dict[Act, frozenset[str]] = {
    Act.READ: _READERS,
    Act.READ_TASK: _READERS,
    Act.CREATE_RUN: frozenset({"run"}),
    Act.ABORT_RUN: frozenset({"run"}),
    Act.SIGNAL: frozenset({"run"}),
    Act.DEPLOY: frozenset({"deploy"}),
    Act.WATCH_CHILDREN: frozenset({"run"}),
    Act.CHECKPOINT_READ: frozenset({"run"}),
    Act.BLOB_WRITE: _READERS,
    Act.BLOB_READ: _READERS,
}
"""What the project-wide scopes may do, within their projects."""


def authorize(principal: Principal, act: Act, target: Target) -> None:
    """Return if `principal` may do `act` on `target`; raise `Forbidden` saying why not."""
    if "admin" in principal.scopes:
        return
    scopes = _BY_SCOPE.get(act, frozenset())
    if act is Act.BLOB_READ:
        # A digest is not a capability: the blob must belong to one of the token's projects.
        if scopes & principal.scopes and (principal.projects or target.projects) & target.projects:
            return
    elif any(principal.allows(scope, target.project) for scope in scopes):
        return
    if principal.attempt is not None and _worker_may(principal, act, target):
        return
    if act in (Act.READ, Act.SPANS) and target.run and principal.allows(f"worker:{target.run}", target.project):
        return  # a stored `worker:RUN` token (an admin made it) reads its run and files spans under it, no more
    if principal.clusters and _agent_may(principal.clusters, act, target):
        return
    raise _refusal(principal, act, target)


def _worker_may(principal: Principal, act: Act, target: Target) -> bool:
    ref = principal.attempt
    assert ref is not None
    if act is Act.BLOB_READ:
        return ref.project in target.projects
    if act is Act.BLOB_WRITE:
        return target.project == ref.project
    if act is Act.READ_TASK:
        return target.project == ref.project  # `remote.Task.get`: the tasks its code calls, in its run's project
    if target.run != ref.run or target.project not in (None, ref.project):
        return False
    if act in (Act.READ, Act.SPANS):
        return True
    if act in (Act.SUBMIT, Act.WATCH_CHILDREN, Act.CHECKPOINT_WRITE, Act.CHECKPOINT_READ):
        return target.action == ref.action
    if act is Act.REPORT:
        return target.action == ref.action and target.attempt == ref.attempt
    return False


def _agent_may(clusters: frozenset[str], act: Act, target: Target) -> bool:
    if act is Act.AGENT_EVENT:
        current = target.current
        # Only an attempt the gateway placed on this cluster, and only while it is that attempt: never queued work
        # (which placement, not an agent, hands out) nor an attempt that has ended or moved.
        if current is None or current.cluster not in clusters or target.attempt != current.attempts:
            return False
        # A warm pool's `running` can arrive after the attempt's result: it may still date the attempt's start.
        late_start = target.event_phase is Phase.RUNNING and current.phase.is_terminal
        return current.phase in (Phase.PLACED, Phase.RUNNING) or late_start
    if act in (Act.AGENT_LOGS, Act.SPANS):
        return target.placed_on in clusters
    if act is Act.BLOB_READ:
        return bool(target.projects & target.agent_projects)
    if act is Act.READ_TASK:
        return target.project in target.agent_projects
    return False


def _refusal(principal: Principal, act: Act, target: Target) -> Forbidden:
    held = ", ".join(sorted(principal.scopes)) or "none"
    if principal.attempt is not None:
        ref = principal.attempt
        held = f"worker of {ref.run}/{ref.action} attempt {ref.attempt}"
    where = f" in project {target.project!r}" if target.project else ""
    what = f" {target.run}/{target.action}" if target.run and target.action else f" {target.run}" if target.run else ""
    return Forbidden(f"this token ({held}) may not {act.value}{what}{where}")
