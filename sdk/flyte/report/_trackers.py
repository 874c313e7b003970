"""Flyte 2's report widgets: `DataProcessingTracker` (progress, rate, activity) and `TrainingLossTracker` (loss
curves, metrics per epoch), with Flyte 2's constructors and coroutines.

Flyte 2 streams script calls into a live page; here each update renders the widget again as plain HTML and
inline SVG (no script, so it shows the same in the UI's sandboxed frame, in a file, or in a mail) and replaces the
widget's own fragment of the main tab, then flushes. What else the task logs to the tab stays where it is.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ._report import MAIN_TAB, Tab, current_report, flush

_ACTIVITY_KEPT = 30
_ROWS_KEPT = 15
_RATES_KEPT = 50
_ICONS = {"error": "❌", "warning": "⚠️", "success": "✅", "info": "\N{INFORMATION SOURCE}\ufe0f"}
_BOX = "background:#f8f9fa;padding:15px;border-radius:8px;flex:1"
_DONE = "background:#d4edda;border:1px solid #c3e6cb;color:#155724;padding:20px;border-radius:8px;margin-top:20px"


class _Widget:
    """A fragment of the main tab that this widget owns and renders again on each update."""

    def __init__(self) -> None:
        self._tab: Tab | None = None
        self._index = -1
        self._shown = ""

    def _render(self) -> str:
        raise NotImplementedError

    async def _show(self) -> None:
        page = self._render()
        tab = current_report().get_tab(MAIN_TAB)
        mine = tab is self._tab and 0 <= self._index < len(tab.content) and tab.content[self._index] is self._shown
        if mine:
            tab.content[self._index] = page
        else:  # first show, or the tab was replaced meanwhile: the widget goes at the end
            tab.log(page)
            self._tab, self._index = tab, len(tab.content) - 1
        self._shown = tab.content[self._index]
        await flush.aio()


def _bar(percent: float, colour: str) -> str:
    percent = max(0.0, min(100.0, percent))
    return (
        '<div style="background:#e9ecef;height:24px;border-radius:12px;position:relative">'
        f'<div class="flyte-progress" style="background:{colour};height:100%;border-radius:12px;width:{percent:.1f}%">'
        "</div>"
        '<div style="position:absolute;top:50%;left:50%;transform:translate(-50%,-50%);font-weight:bold">'
        f"{percent:.1f}%</div></div>"
    )


def _chart(series: list[tuple[str, str, list[float]]], width: int = 600, height: int = 240) -> str:
    """Lines (label, colour, values) on shared axes, as inline SVG."""
    values = [v for _, _, points in series for v in points]
    if not values:
        return '<p style="color:#6c757d">No data yet.</p>'
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    left, top, plot_w, plot_h = 50, 10, width - 60, height - 40
    parts = [
        f'<svg class="flyte-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<path d="M{left},{top} V{top + plot_h} H{left + plot_w}" stroke="#666" fill="none"/>',
        f'<text x="4" y="{top + 10}" font-size="11">{high:.4g}</text>',
        f'<text x="4" y="{top + plot_h}" font-size="11">{low:.4g}</text>',
    ]
    for i, (label, colour, points) in enumerate(series):
        step = plot_w / max(len(points) - 1, 1)
        coords = " ".join(
            f"{left + n * step:.1f},{top + plot_h - (v - low) / span * plot_h:.1f}" for n, v in enumerate(points)
        )
        parts.append(f'<polyline points="{coords}" stroke="{colour}" stroke-width="2" fill="none"/>')
        legend = f'x="{left + 10 + i * 150}" y="{height - 6}" font-size="11" fill="{colour}"'
        parts.append(f"<text {legend}>{html.escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


class DataProcessingTracker(_Widget):
    """Progress of a job over `total_records`: a progress bar, speed, ETA, success rate, a rate chart and a log."""

    def __init__(
        self,
        total_records: int,
        title: str = "📊 Data Processing Dashboard",
        description: str = "Processing records in real-time...",
    ):
        super().__init__()
        if total_records <= 0:
            raise ValueError(f"DataProcessingTracker: total_records={total_records!r} must be positive")
        self.total_records = total_records
        self.title = title
        self.description = description
        self.processed = 0
        self.errors = 0
        self.start_time = time.time()
        self.last_update = self.start_time
        self.rates: list[int] = []
        self.activity: list[tuple[str, str, str]] = []
        self.summary: dict[str, Any] | None = None
        self.initialized = False

    async def initialize(self) -> None:
        if self.initialized:
            return
        self.initialized = True
        await self.log_activity("Dashboard initialized", "success")

    def _rate(self) -> int:
        elapsed = time.time() - self.start_time
        return int(self.processed / elapsed) if elapsed > 0 else 0

    def _success_rate(self) -> float:
        return (self.processed - self.errors) / max(self.processed, 1) * 100

    async def update_progress(self, records_processed: int, errors: int = 0, custom_message: str | None = None) -> None:
        self.initialized = True
        self.processed = min(records_processed, self.total_records)
        self.errors = errors
        self.rates = [*self.rates, self._rate()][-_RATES_KEPT:]
        self.last_update = time.time()
        if custom_message:
            await self.log_activity(custom_message)
        else:
            await self._show()

    async def log_activity(self, message: str, activity_type: str = "info") -> None:
        self.initialized = True
        stamp = time.strftime("%H:%M:%S")
        self.activity = [(stamp, activity_type, message), *self.activity][:_ACTIVITY_KEPT]
        await self._show()

    async def batch_update(self, batch_size: int, batch_errors: int = 0, batch_message: str | None = None) -> None:
        if batch_message is None:
            kind = "warning" if batch_errors else "success"
            batch_message = (
                f"Processed batch of {batch_size} records ({batch_errors} errors)"
                if batch_errors
                else f"Successfully processed batch of {batch_size} records"
            )
        else:
            kind = "error" if batch_errors else "info"
        await self.update_progress(self.processed + batch_size, self.errors + batch_errors)
        await self.log_activity(batch_message, kind)

    async def complete(self, final_message: str | None = None) -> dict[str, Any]:
        total_time = time.time() - self.start_time
        self.summary = {
            "total_records": self.total_records,
            "processed": self.processed,
            "processing_time": total_time,
            "average_rate": int(self.total_records / total_time) if total_time > 0 else 0,
            "success_rate": self._success_rate(),
            "errors": self.errors,
        }
        await self.log_activity(final_message or "🎉 Processing completed successfully!", "success")
        return dict(self.summary)

    def _render(self) -> str:
        rate = self.rates[-1] if self.rates else 0
        eta = (
            f"{(self.total_records - self.processed) / rate:.0f}s"
            if rate and self.processed < self.total_records
            else "--"
        )
        if self.processed >= self.total_records:
            eta = "Complete"
        log = "".join(
            f'<div style="margin-bottom:5px">[{stamp}] {_ICONS.get(kind, _ICONS["info"])} {html.escape(text)}</div>'
            for stamp, kind, text in self.activity
        )
        done = ""
        if self.summary is not None:
            s = self.summary
            done = (
                f'<div style="{_DONE}"><h3>🎉 Processing Complete!</h3><ul>'
                f"<li><strong>Total Records:</strong> {s['total_records']:,}</li>"
                f"<li><strong>Records Processed:</strong> {s['processed']:,}</li>"
                f"<li><strong>Processing Time:</strong> {s['processing_time']:.1f} seconds</li>"
                f"<li><strong>Average Rate:</strong> {s['average_rate']:,} records/second</li>"
                f"<li><strong>Success Rate:</strong> {s['success_rate']:.2f}%</li>"
                f"<li><strong>Errors Handled:</strong> {s['errors']}</li></ul></div>"
            )
        return (
            f'<div class="flyte-data-tracker"><h1>{html.escape(self.title)}</h1><p>{html.escape(self.description)}</p>'
            '<div style="display:flex;gap:20px;margin-bottom:20px">'
            f'<div style="{_BOX}"><h3>Progress Overview</h3>'
            f"{_bar(self.processed / self.total_records * 100, 'linear-gradient(90deg,#28a745,#20c997)')}</div>"
            f'<div style="{_BOX}"><h3>Processing Stats</h3>'
            f'<p>Records Processed: <span class="processed">{self.processed:,}</span></p>'
            f"<p>Success Rate: {self._success_rate():.1f}%</p><p>Processing Speed: {rate} records/sec</p>"
            f"<p>Estimated Time Remaining: {eta}</p></div></div>"
            '<div style="display:flex;gap:20px"><div style="flex:2"><h3>Processing Rate (Records/Second)</h3>'
            f"{_chart([('records/sec', '#17a2b8', [float(r) for r in self.rates])])}</div>"
            '<div style="flex:1"><h3>Recent Activity</h3><div class="activity" style="height:240px;overflow-y:auto;'
            f'background:#f8f9fa;padding:10px;border-radius:5px;font-family:monospace;font-size:12px">{log}</div>'
            f"</div></div>{done}</div>"
        )


class TrainingLossTracker(_Widget):
    """Training over `total_epochs`: progress, the best validation loss, loss curves and a table of metrics."""

    def __init__(
        self,
        total_epochs: int,
        title: str = "🚀 Training Progress Dashboard",
        description: str = "Streaming real-time training metrics...",
        metrics_to_track: list[str] | None = None,
    ):
        super().__init__()
        if total_epochs <= 0:
            raise ValueError(f"TrainingLossTracker: total_epochs={total_epochs!r} must be positive")
        self.total_epochs = total_epochs
        self.title = title
        self.description = description
        self.metrics_to_track = metrics_to_track or ["training_loss", "validation_loss", "accuracy", "learning_rate"]
        self.current_epoch = 0
        self.start_time = time.time()
        self.training_losses: list[float] = []
        self.validation_losses: list[float] = []
        self.metrics_history: dict[str, list[float]] = {metric: [] for metric in self.metrics_to_track}
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.notes: list[str] = []
        self.status = "Starting..."
        self.best_val_loss = float("inf")
        self.best_epoch = 0
        self.initialized = False

    async def initialize(self) -> None:
        if self.initialized:
            return
        self.initialized = True
        await self._show()

    async def log_epoch(
        self, epoch: int, training_loss: float, validation_loss: float | None = None, **kwargs: Any
    ) -> None:
        self.initialized = True
        self.current_epoch = epoch
        self.training_losses.append(training_loss)
        self.status = "Training..."
        if validation_loss is not None:
            self.validation_losses.append(validation_loss)
            if validation_loss < self.best_val_loss:
                self.best_val_loss, self.best_epoch, self.status = validation_loss, epoch, "New best model!"
        else:
            validation_loss = self.validation_losses[-1] if self.validation_losses else 0.0
        metrics = {"training_loss": training_loss, "validation_loss": validation_loss, **kwargs}
        for name, value in metrics.items():
            if name in self.metrics_history:
                self.metrics_history[name].append(value)
        self.rows = [(epoch, metrics), *self.rows][:_ROWS_KEPT]
        await self._show()

    async def log_training_step(self, epoch: int, step: int, loss: float, message: str | None = None) -> None:
        if message:
            self.notes.append(f"Epoch {epoch}, Step {step}: {message} (Loss: {loss:.4f})")
            await self._show()

    async def early_stopping_check(self, patience: int = 5, min_delta: float = 1e-4) -> bool:
        """True when the last `patience` epochs brought no validation loss `min_delta` below the best before."""
        if len(self.validation_losses) < patience + 1:
            return False
        recent = self.validation_losses[-patience - 1 :]
        if recent[-1] > min(recent[:-1]) - min_delta:
            self.notes.append(
                f"⚠️ Early Stopping Triggered: no improvement in validation loss for the last {patience} epochs."
            )
            await self._show()
            return True
        return False

    async def complete(self, final_message: str | None = None, save_model: bool = True) -> dict[str, Any]:
        total_time = time.time() - self.start_time
        self.status = "Model saved and ready for deployment" if save_model else "Training complete"
        self.notes.append(f"✅ {final_message or 'Training completed successfully!'}")
        await self._show()
        return {
            "epochs_completed": self.current_epoch,
            "total_epochs": self.total_epochs,
            "training_time": total_time,
            "final_train_loss": self.training_losses[-1] if self.training_losses else 0.0,
            "final_val_loss": self.validation_losses[-1] if self.validation_losses else 0.0,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "avg_time_per_epoch": total_time / max(self.current_epoch, 1),
            "training_losses": self.training_losses,
            "validation_losses": self.validation_losses,
            "metrics_history": self.metrics_history,
        }

    def _render(self) -> str:
        elapsed = time.time() - self.start_time
        left = self.total_epochs - self.current_epoch
        eta = f"{elapsed / self.current_epoch * left:.0f}s" if self.current_epoch and left > 0 else "--"
        best = f"{self.best_val_loss:.4f}" if self.best_epoch else "--"
        heads = "".join(f"<th>{html.escape(m.replace('_', ' ').title())}</th>" for m in self.metrics_to_track)
        rows = "".join(
            f"<tr><td>{epoch}</td>{''.join(f'<td>{_cell(m, metrics.get(m))}</td>' for m in self.metrics_to_track)}</tr>"
            for epoch, metrics in self.rows
        )
        notes = "".join(f'<div class="note" style="margin:4px 0">{html.escape(n)}</div>' for n in self.notes)
        curves = [
            ("Training Loss", "#3498db", self.training_losses),
            ("Validation Loss", "#e74c3c", self.validation_losses),
        ]
        return (
            f'<div class="flyte-training-tracker"><h1>{html.escape(self.title)}</h1>'
            f"<p>{html.escape(self.description)}</p>"
            '<div style="display:flex;gap:20px;margin-bottom:20px">'
            f'<div style="{_BOX};flex:2"><h3>Training Progress</h3>'
            f'<p><strong>Epoch:</strong> <span class="epoch">{self.current_epoch}/{self.total_epochs}</span></p>'
            f"<p><strong>Elapsed Time:</strong> {elapsed:.0f}s</p><p><strong>ETA:</strong> {eta}</p>"
            f"{_bar(self.current_epoch / self.total_epochs * 100, 'linear-gradient(90deg,#007bff,#0056b3)')}</div>"
            f'<div style="{_BOX}"><h3>Best Model</h3><p><strong>Best Val Loss:</strong> {best}</p>'
            f"<p><strong>Best Epoch:</strong> {self.best_epoch or '--'}</p>"
            f'<p><strong>Status:</strong> <span class="status">{html.escape(self.status)}</span></p></div></div>'
            '<div style="display:flex;gap:20px">'
            f'<div style="flex:2"><h3>Loss Curves</h3>{_chart(curves, 700, 300)}</div>'
            '<div style="flex:1"><h3>Recent Metrics</h3><table class="metrics" border="1" '
            'style="width:100%;border-collapse:collapse;font-size:12px">'
            f"<thead><tr><th>Epoch</th>{heads}</tr></thead><tbody>{rows}</tbody></table></div></div>{notes}</div>"
        )


def _cell(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape("" if value is None else str(value))
    if "accuracy" in name:
        return f"{value * 100:.2f}%"
    if "learning_rate" in name or "lr" in name:
        return f"{value:.2e}"
    return f"{value:.4f}"
