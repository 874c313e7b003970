"""What the agent gives the parts that run attempts for it: warm pools (`agent._pools`, and their Kubernetes form in
`agent.backends._kube_pools`) and spare workers (`agent._spares`). They depend on this, not on `Agent`, so they can be
read, and tested, without the whole agent, and the agent's module is the only one that knows them all.

    Agent ──implements──► AttemptHost ◄──uses── Pools, KubePools, Spares
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from agent._admission import Admission
from agent._tracing import AgentTracing
from agent.backends import Backend
from agent.backends._run_as import RunAs
from flyte._wire import Assignment, ClusterRecord, TaskSpec


class AttemptHost(Protocol):
    @property
    def gateway(self) -> str:
        """The base URL of the gateway replica the agent is connected to."""

    def worker_endpoints(self) -> str:
        """What workers dial (FLYTE_ENDPOINT): every replica, the agent's own first."""

    @property
    def cluster(self) -> ClusterRecord: ...

    @property
    def backend(self) -> Backend:
        """Where worker processes (or pods) are launched."""

    @property
    def work_dir(self) -> Path: ...

    @property
    def run_as(self) -> RunAs | None:
        """The user task processes run as, if not the agent's own."""

    @property
    def admission(self) -> Admission:
        """The agent's start slots: a worker's start takes one, as an attempt's does."""

    @property
    def tracing(self) -> AgentTracing: ...

    async def task_spec(self, assignment: Assignment) -> TaskSpec:
        """The deployed task's spec (image, environment variables) of an assignment."""

    def worker_env(self, task_env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a worker process: the agent's less credentials, the task's, then `fixed_worker_env`."""

    def fixed_worker_env(self) -> dict[str, str]:
        """What every worker is told about where it runs."""

    def ship_log(self, assignment: Assignment, stream: str, data: bytes) -> None:
        """Output of an attempt, for its log."""

    def handed_over(self, key: str) -> None:
        """A pool's attempt reached its worker: from now on it counts as running."""

    def stopped(self, key: str) -> bool:
        """Whether the attempt was aborted (or moved away by a drain) since it was given to the agent."""

    def finished(self, key: str) -> None:
        """The attempt's task has ended and its worker is reporting its result: it is not to be reported `running`."""
