"""Reports: HTML a task writes about itself while it runs, one per action, in tabs.

A task declared with `@env.task(report=True)` gets a fresh `Report` for each attempt; `log`, `replace` and
`get_tab` fill it, and `flush` (or the end of the attempt, whatever its outcome) renders it to one
self-contained HTML page that the action's controller keeps: local mode writes
`<run metadata dir>/reports/<action>.html`, a worker puts it in the gateway's blob store and records the blob on
the action. Outside such a task the calls write into a throwaway report, so library code can log freely.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass, field

from .._context import current_action
from .._syncify import syncify

__all__ = ["Report", "Tab", "current_report", "flush", "get_tab", "log", "replace"]

MAIN_TAB = "main"

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; }}
nav {{ display: flex; gap: 0.25rem; border-bottom: 1px solid #ccc; padding: 0.5rem 0.5rem 0; }}
nav label {{ padding: 0.4rem 0.8rem; cursor: pointer; border: 1px solid #ccc; border-bottom: none; }}
main > section {{ display: none; padding: 1rem; }}
input[name="flyte-tab"] {{ display: none; }}
{rules}
</style></head>
<body>{inputs}<nav>{labels}</nav><main>{sections}</main></body></html>
"""


@dataclass
class Tab:
    """One tab of a report: HTML fragments shown in order."""

    name: str
    content: list[str] = field(default_factory=list, init=False)

    def log(self, content: str) -> None:
        """Append an HTML fragment (not a whole document: it is placed inside the tab)."""
        self.content.append(_fragment(content))

    def replace(self, content: str) -> None:
        """Make this fragment the tab's only content."""
        self.content = [_fragment(content)]

    def get_html(self) -> str:
        return "\n".join(self.content)


@dataclass
class Report:
    """An action's report: named tabs, the first of which is "main"."""

    name: str
    tabs: dict[str, Tab] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tabs.setdefault(MAIN_TAB, Tab(MAIN_TAB))

    def has_content(self) -> bool:
        return any(tab.content for tab in self.tabs.values())

    def get_tab(self, name: str, create_if_missing: bool = True) -> Tab:
        """The tab of that name, made on first use unless `create_if_missing` is False."""
        if name not in self.tabs:
            if not create_if_missing:
                raise ValueError(f"report {self.name!r} has no tab {name!r}")
            self.tabs[name] = Tab(name)
        return self.tabs[name]

    def get_final_report(self) -> str:
        """The whole report as one HTML page; tabs switch with CSS alone, so the page needs no script."""
        # Tab names are user text: escaped wherever they appear. Fragments are HTML by contract, kept as given.
        tabs = list(self.tabs.values())
        inputs = "".join(
            f'<input type="radio" name="flyte-tab" id="flyte-tab-{i}"{" checked" if i == 0 else ""}>'
            for i in range(len(tabs))
        )
        labels = "".join(f'<label for="flyte-tab-{i}">{html.escape(tab.name)}</label>' for i, tab in enumerate(tabs))
        sections = "".join(f"<section>{tab.get_html()}</section>" for tab in tabs)
        rules = "\n".join(
            f"#flyte-tab-{i}:checked ~ main > section:nth-of-type({i + 1}) {{ display: block; }}\n"
            f"#flyte-tab-{i}:checked ~ nav label:nth-of-type({i + 1}) {{ font-weight: bold; }}"
            for i in range(len(tabs))
        )
        return _PAGE.format(title=html.escape(self.name), rules=rules, inputs=inputs, labels=labels, sections=sections)


def _fragment(content: object) -> str:
    if isinstance(content, str):
        return content
    # Objects that render themselves (pandas frames, plots): their HTML, as notebooks show them.
    to_html = getattr(content, "_repr_html_", None) or getattr(content, "to_html", None)
    if callable(to_html):
        return str(to_html())
    raise TypeError(f"report content must be an HTML str or have _repr_html_()/to_html(), not {type(content).__name__}")


_DUMMY = Report("dummy")


def current_report() -> Report:
    """The running action's report; a throwaway one outside a task declared with `report=True`."""
    action = current_action.get()
    report = action.report if action is not None else None
    return report if report is not None else _DUMMY


def get_tab(name: str, /, create_if_missing: bool = True) -> Tab:
    """A tab of the current report (made on first use)."""
    return current_report().get_tab(name, create_if_missing=create_if_missing)


@syncify
async def flush() -> None:
    """Render the current report and hand it to the action's controller now (it is also saved at the end)."""
    action = current_action.get()
    if action is None or action.report is None:
        return
    page = action.report.get_final_report()
    # Writing a file or uploading a blob blocks; the task's own loop keeps running meanwhile.
    await asyncio.to_thread(action.controller.save_report, action, page)


@syncify
async def log(content: str, do_flush: bool = False) -> None:
    """Append an HTML fragment to the main tab; `do_flush` saves the report at once."""
    get_tab(MAIN_TAB).log(content)
    if do_flush:
        await flush.aio()


@syncify
async def replace(content: str, do_flush: bool = False) -> None:
    """Make this fragment the main tab's only content; `do_flush` saves the report at once."""
    get_tab(MAIN_TAB).replace(content)
    if do_flush:
        await flush.aio()
