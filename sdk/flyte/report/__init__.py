"""`flyte.report`: HTML reports written by tasks declared with `@env.task(report=True)` (Flyte 2's module).

```python
@env.task(report=True)
async def train() -> None:
    flyte.report.log("<h2>Loss</h2>")
    flyte.report.get_tab("Data").log(frame.to_html())
    await flyte.report.flush.aio()
```

`DataProcessingTracker` and `TrainingLossTracker` are Flyte 2's ready-made widgets (progress, loss curves).

Local runs keep each action's report as `~/.flyte/local/runs/<run>/reports/<action>.html`.
"""

from ._report import Report, Tab, current_report, flush, get_tab, log, replace
from ._trackers import DataProcessingTracker, TrainingLossTracker

__all__ = [
    "DataProcessingTracker",
    "Report",
    "Tab",
    "TrainingLossTracker",
    "current_report",
    "flush",
    "get_tab",
    "log",
    "replace",
]
