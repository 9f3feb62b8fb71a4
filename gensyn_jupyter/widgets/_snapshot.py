"""The static snapshot of a run: an SVG chart and a summary table, for saved notebooks.

Drawn by hand (no plotting library, no script, no external resource) so that
nbconvert, GitHub and VS Code show it from the ``.ipynb`` alone. Colours are
``currentColor`` for text and axes, so the chart reads on light and dark
backgrounds, plus a fixed palette for the lines. Every string that comes
from outside (metric names, task ids, provider names) is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._format import fmt_duration, fmt_int, fmt_value
from ._lttb import finite_xy, lttb_arrays

__all__ = ["MAX_LINE_POINTS", "render_snapshot"]

MAX_LINE_POINTS = 1000
_MAX_PANELS = 6
_PALETTE = ("#3b82f6", "#f97316", "#22c55e", "#ef4444", "#a855f7", "#14b8a6")
_WIDTH = 640
_LEFT, _RIGHT, _TOP = 64, 16, 22
_PANEL_H = 140
_GAP = 30
_BOTTOM = 38

# Labels of the summary keys the kernel passes, in display order.
_SUMMARY_ROWS = (
    ("task_id", "Task"),
    ("state", "State"),
    ("provider", "Provider"),
    ("device", "Device"),
    ("steps", "Steps"),
    ("duration_s", "Duration"),
    ("gpu_seconds", "GPU time"),
)


def render_snapshot(
    history: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    summary: Mapping[str, Any],
) -> dict[str, str]:
    """Draw a run as ``text/html`` (SVG chart + tables) and ``text/plain``.

    Parameters
    ----------
    history
        Every point of every metric: ``{name: (steps, values)}``. Each line
        is LTTB-downsampled to at most 1,000 points; NaN and infinite values
        are left out of the chart.
    summary
        What the kernel knows of the run: ``task_id``, ``state``,
        ``provider``, ``device``, ``steps``, ``duration_s``, ``gpu_seconds``,
        ``loss_first``, ``loss_last``. Missing or None keys are skipped;
        other scalar keys are listed as they are.

    Returns
    -------
    dict of str to str
        ``{"text/plain": ..., "text/html": "<div ...>...<svg>...</svg><table>...</table></div>"}``.
        The HTML is well-formed XML.
    """
    metrics = _prepare(history)
    parts = [
        f'<div class="gensyn-snapshot" data-gensyn-task="{_e(summary.get("task_id") or "")}">',
        f"<p><strong>gensyn</strong> {_e(_headline(summary))}</p>",
    ]
    charted = [m for m in metrics if len(m.x)]
    if charted:
        parts.append(_svg(charted[:_MAX_PANELS], summary))
        if len(charted) > _MAX_PANELS:
            parts.append(
                f"<p>The chart shows the first {_MAX_PANELS} metrics; all are listed below.</p>"
            )
    else:
        parts.append("<p>No metrics were logged.</p>")
    parts.append(_summary_table(summary))
    if metrics:
        parts.append(_metrics_table(metrics))
    parts.append("</div>")
    return {"text/plain": _plain(metrics, summary), "text/html": "".join(parts)}


class _Metric:
    def __init__(self, name: str, steps: Sequence[int], values: Sequence[float]) -> None:
        self.name = name
        all_x = np.asarray(steps, dtype=np.float64)
        all_y = np.asarray(values, dtype=np.float64)
        self.count = len(all_y)
        self.first = float(all_y[0]) if self.count else None
        self.last = float(all_y[-1]) if self.count else None
        x, y = finite_xy(all_x, all_y)
        self.lo = float(y.min()) if len(y) else None
        self.hi = float(y.max()) if len(y) else None
        self.x, self.y = lttb_arrays(x, y, MAX_LINE_POINTS)


def _prepare(history: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> list[_Metric]:
    names = list(history)
    if "loss" in history:
        names.remove("loss")
        names.insert(0, "loss")
    return [_Metric(str(n), *history[n]) for n in names]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _headline(summary: Mapping[str, Any]) -> str:
    words = []
    if summary.get("task_id"):
        words.append(f"task {summary['task_id']}")
    if summary.get("state"):
        words.append(str(summary["state"]))
    if summary.get("provider"):
        where = f"on {summary['provider']}"
        if summary.get("device"):
            where += f" ({summary['device']})"
        words.append(where)
    return " · ".join(words) or "training run"


def _plain(metrics: list[_Metric], summary: Mapping[str, Any]) -> str:
    line = ["gensyn " + _headline(summary)]
    if summary.get("steps") is not None:
        line.append(f"{_summary_value('steps', summary['steps'])} steps")
    for key in ("duration_s", "gpu_seconds"):
        if summary.get(key) is not None:
            line.append(_summary_value(key, summary[key]))
    lines = [" · ".join(line)]
    for m in metrics:
        lines.append(
            f"  {m.name}: {fmt_value(m.first)} → {fmt_value(m.last)}"
            f" (min {fmt_value(m.lo)}, max {fmt_value(m.hi)}, {fmt_int(m.count)} points)"
        )
    if not metrics:
        lines.append("  no metrics were logged")
    return "\n".join(lines)


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = []
    known = {key for key, _ in _SUMMARY_ROWS} | {"loss_first", "loss_last"}
    for key, label in _SUMMARY_ROWS:
        value = summary.get(key)
        if value is None:
            continue
        rows.append((label, _summary_value(key, value)))
    first, last = summary.get("loss_first"), summary.get("loss_last")
    if first is not None or last is not None:
        rows.append(("Loss", f"{_opt_value(first)} → {_opt_value(last)}"))
    for key, value in summary.items():
        if key not in known and isinstance(value, str | int | float | bool) and value is not None:
            rows.append((str(key), str(value)))
    body = "".join(f"<tr><th>{_e(label)}</th><td>{_e(text)}</td></tr>" for label, text in rows)
    return f'<table class="gensyn-summary"><tbody>{body}</tbody></table>'


def _summary_value(key: str, value: Any) -> str:
    try:
        if key == "steps":
            return fmt_int(int(value))
        if key == "duration_s":
            return fmt_duration(float(value))
        if key == "gpu_seconds":
            return f"{float(value):.1f} GPU·s"
    except (TypeError, ValueError, OverflowError):
        pass
    return str(value)


def _opt_value(value: Any) -> str:
    try:
        return fmt_value(None if value is None else float(value))
    except (TypeError, ValueError):
        return str(value)


def _metrics_table(metrics: list[_Metric]) -> str:
    head = (
        "<tr>"
        + "".join(f"<th>{h}</th>" for h in ("Metric", "Points", "First", "Last", "Min", "Max"))
        + "</tr>"
    )
    rows = "".join(
        f"<tr><td>{_e(m.name)}</td><td>{fmt_int(m.count)}</td><td>{fmt_value(m.first)}</td>"
        f"<td>{fmt_value(m.last)}</td><td>{fmt_value(m.lo)}</td><td>{fmt_value(m.hi)}</td></tr>"
        for m in metrics
    )
    return f'<table class="gensyn-metrics"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _nice_ticks(lo: float, hi: float, count: int = 4, *, integer: bool = False) -> list[float]:
    """About ``count`` round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    span = hi - lo
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(step, 1.0)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def _tick_label(v: float, ticks: list[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(v) or 1.0
    if abs(v) >= 1e5 or (abs(v) < 1e-3 and v != 0):
        return f"{v:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{v:,.{decimals}f}"


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 0.5
    return lo - pad, hi + pad


def _svg(drawn: list[_Metric], summary: Mapping[str, Any]) -> str:
    x_lo, x_hi = _padded(min(float(m.x.min()) for m in drawn), max(float(m.x.max()) for m in drawn))
    x_ticks = _nice_ticks(x_lo, x_hi, 6, integer=True)
    height = _TOP + len(drawn) * _PANEL_H + (len(drawn) - 1) * _GAP + _BOTTOM
    plot_w = _WIDTH - _LEFT - _RIGHT

    def sx(v: float) -> float:
        return _LEFT + (v - x_lo) / (x_hi - x_lo) * plot_w

    names = ", ".join(m.name for m in drawn)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" font-family="sans-serif" font-size="11" '
        f'fill="currentColor" style="max-width:100%;height:auto" '
        f'aria-label="{_e("training curves: " + names)}">',
        f"<title>{_e(_headline(summary) + ': ' + names)}</title>",
    ]
    for k, m in enumerate(drawn):
        top = _TOP + k * (_PANEL_H + _GAP)
        bottom = top + _PANEL_H
        assert m.lo is not None and m.hi is not None
        y_lo, y_hi = _padded(m.lo, m.hi)
        y_ticks = [t for t in _nice_ticks(y_lo, y_hi, 5) if y_lo <= t <= y_hi]

        def sy(v: float, top: int = top, y_lo: float = y_lo, y_hi: float = y_hi) -> float:
            return top + _PANEL_H - (v - y_lo) / (y_hi - y_lo) * _PANEL_H

        color = _PALETTE[k % len(_PALETTE)]
        out.append(f'<g class="gensyn-panel" data-metric="{_e(m.name)}">')
        out.append(
            f'<text x="{_LEFT}" y="{top - 7}" font-weight="bold" fill="{color}">{_e(m.name)}</text>'
        )
        for t in y_ticks:
            y = sy(t)
            out.append(
                f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="currentColor" stroke-opacity="0.12"/>'
                f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{_e(_tick_label(t, y_ticks))}</text>"
            )
        for t in x_ticks:
            x = sx(t)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" '
                f'stroke="currentColor" stroke-opacity="0.08"/>'
            )
            if k == len(drawn) - 1:
                out.append(
                    f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">'
                    f"{_e(_tick_label(t, x_ticks))}</text>"
                )
        out.append(
            f'<rect x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL_H}" fill="none" '
            f'stroke="currentColor" stroke-opacity="0.4"/>'
        )
        if len(m.x) == 1:
            out.append(
                f'<circle cx="{sx(float(m.x[0])):.1f}" cy="{sy(float(m.y[0])):.1f}" r="3" '
                f'fill="{color}"/>'
            )
        else:
            points = " ".join(
                f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(m.x.tolist(), m.y.tolist(), strict=True)
            )
            out.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5" '
                f'stroke-linejoin="round"/>'
            )
        out.append("</g>")
    out.append(
        f'<text x="{_LEFT + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">step</text>'
    )
    out.append("</svg>")
    return "".join(out)
