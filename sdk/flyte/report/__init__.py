"""`flyte.report`: HTML reports written by tasks declared with `@env.task(report=True)` (Flyte 2's module).

```python
@env.task(report=True)
async def train() -> None:
    flyte.report.log("<h2>Loss</h2>")
    flyte.report.get_tab("Data").log(frame.to_html())
    await flyte.report.flush.aio()
```

Local runs keep each action's report as `~/.flyte/local/runs/<run>/reports/<action>.html`.
"""

from .._unimplemented import missing_class
from ._report import Report, Tab, current_report, flush, get_tab, log, replace

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

DataProcessingTracker = missing_class("flyte.report.DataProcessingTracker", "progress-tracker widgets in reports")
TrainingLossTracker = missing_class("flyte.report.TrainingLossTracker", "loss-curve widgets in reports")
