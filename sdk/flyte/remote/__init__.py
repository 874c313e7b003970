"""`flyte.remote`: read-only views over deployed tasks, runs, actions and clusters, and deployed-task references.

In local mode these read the flyte home (runs' metadata directories, local deployments) and resolve task names
against the environments defined in this process; with a gateway they will read its API.
"""

from ._action import Action
from ._cluster import Cluster
from ._condition import Condition
from ._run import Run
from ._task import Task, TaskInfo, TaskReference
from ._trigger import Trigger

__all__ = ["Action", "Cluster", "Condition", "Run", "Task", "TaskInfo", "TaskReference", "Trigger"]
