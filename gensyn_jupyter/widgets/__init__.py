"""The live training monitor of a ``%%gensyn_train`` cell, and its static snapshot.

:class:`TrainingMonitor` is the widget (anywidget; its TypeScript source is
``src/monitor.ts``, bundled with uPlot into ``static/monitor.js`` by
``npm run build:widget``). :class:`TextProgress` is the same monitor as one
text line, for plain IPython and scripts. :func:`render_snapshot` draws a
run as an SVG chart and a table for saved notebooks, and :func:`lttb`
downsamples a line for both. How a cell's output looks live and saved is
described in ``docs/monitor.md``.

Importing this package imports neither torch nor anywidget; the names load
on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._lttb import lttb
    from ._monitor import TrainingMonitor
    from ._snapshot import render_snapshot
    from ._text import TextProgress

__all__ = ["TextProgress", "TrainingMonitor", "lttb", "render_snapshot"]

_WHERE = {
    "TextProgress": "._text",
    "TrainingMonitor": "._monitor",
    "lttb": "._lttb",
    "render_snapshot": "._snapshot",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
