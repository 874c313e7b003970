"""Fair share: the order to place queued actions. Higher priority first (the project's, then the action's); within
a priority, the project furthest below its weighted share (usage / weight) next; FIFO within a project."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from ._model import Demand
from ._policy import DEFAULT_POLICY, Policy, compiled

K = TypeVar("K", bound=Hashable)


def fair_share_order(
    pending: Sequence[tuple[K, Demand]], usage: Mapping[str, float], policy: Policy = DEFAULT_POLICY
) -> list[K]:
    """The ids of `pending` ((id, demand) in arrival order) in placement order.

    `usage` is each project's CPU in use. As the order is built, each action charges its project its cpu (1 when it
    asks for none), so projects interleave by weight rather than one draining first. Projects the policy does not
    name have weight 1 and priority 0.
    """
    projects = compiled(policy).projects
    groups: dict[tuple[int, int], dict[str, deque[tuple[int, K, Demand]]]] = {}
    for index, (key, demand) in enumerate(pending):
        project_priority = projects[demand.project][1] if demand.project in projects else 0
        group = groups.setdefault((project_priority, demand.priority), {})
        group.setdefault(demand.project, deque()).append((index, key, demand))

    def weight(project: str) -> float:
        return projects[project][0] if project in projects else 1.0

    used = dict(usage)
    order: list[K] = []
    for priority in sorted(groups, reverse=True):
        queues = groups[priority]
        heap = [(used.get(p, 0.0) / weight(p), q[0][0], p) for p, q in queues.items()]
        heapq.heapify(heap)
        while heap:
            _, _, project = heapq.heappop(heap)
            queue = queues[project]
            _, key, demand = queue.popleft()
            order.append(key)
            used[project] = used.get(project, 0.0) + (demand.cpu or 1.0)
            if queue:
                heapq.heappush(heap, (used[project] / weight(project), queue[0][0], project))
    return order
