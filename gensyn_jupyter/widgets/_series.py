"""The kernel side of the live chart: full history per metric, and what to send next.

The browser holds a bounded view of each metric: everything while it is
short, then an LTTB-downsampled head plus the recent tail at full
resolution. :class:`SeriesBook` keeps the full history and decides, at each
flush, which points to append and which metrics to replace (a "reset").
It is not thread-safe; :class:`~gensyn_jupyter.widgets.TrainingMonitor`
holds a lock around it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._lttb import finite_xy, lttb_arrays

__all__ = ["Outgoing", "SeriesBook", "coerce_point"]


def coerce_point(point: Mapping[str, Any]) -> tuple[int, str, float] | None:
    """``(step, name, value)`` of a ``{"step", "name", "value"}`` point, or None if malformed."""
    try:
        step, name, value = point["step"], point["name"], point["value"]
    except (KeyError, TypeError):
        return None
    if isinstance(step, bool) or isinstance(value, bool) or not isinstance(name, str) or not name:
        return None
    try:
        step_i = int(step)
        value_f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if step_i != step:  # 2.5, or a string such as "3"
        return None
    return step_i, name, value_f


@dataclass
class _Series:
    steps: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))
    sent: int = 0  # history[:sent] is reflected in the browser's view
    in_browser: int = 0  # how many points the browser holds for this metric


@dataclass(frozen=True)
class Outgoing:
    """One message for the browser: its JSON content and binary buffers.

    ``content`` is ``{"type": "append" | "reset", "seq": n, "series":
    [{"name", "n", "head"}]}`` (plus ``"full": true`` on a reset of every
    metric that answers a resync); for the i-th series, ``buffers[2 * i]`` holds
    its steps and ``buffers[2 * i + 1]`` its values, little-endian float64.
    In a reset, the first ``head`` points of a series are the downsampled
    history and the rest its most recent points at full resolution.
    """

    content: dict[str, Any]
    buffers: list[bytes]


class SeriesBook:
    """Every point of every metric, plus the bookkeeping of the browser's view.

    Parameters
    ----------
    max_points
        A metric whose browser view would pass this many points is reset.
    head_points
        Size of the LTTB-downsampled head of a reset.
    tail_points
        How many of the most recent points a reset carries at full resolution.
    """

    def __init__(self, *, max_points: int = 4000, head_points: int = 2000, tail_points: int = 500):
        if head_points < 3 or tail_points < 0 or head_points + tail_points >= max_points:
            raise ValueError("need 3 <= head_points and head_points + tail_points < max_points")
        self.max_points = max_points
        self.head_points = head_points
        self.tail_points = tail_points
        self._series: dict[str, _Series] = {}
        self._seq = 0

    @property
    def names(self) -> list[str]:
        """Metric names, ``loss`` first, the others in order of appearance."""
        names = list(self._series)
        if "loss" in self._series:
            names.remove("loss")
            names.insert(0, "loss")
        return names

    def add(self, points: Iterable[Mapping[str, Any]]) -> bool:
        """Append points to the history; True when a new metric name appeared."""
        new_name = False
        for point in points:
            parsed = coerce_point(point)
            if parsed is None:
                continue
            step, name, value = parsed
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series()
                new_name = True
            series.steps.append(step)
            series.values.append(value)
        return new_name

    def pending(self) -> bool:
        """True when some point has not been sent yet."""
        return any(len(s.steps) > s.sent for s in self._series.values())

    def history(self) -> dict[str, tuple[list[int], list[float]]]:
        """Every point of every metric, by name."""
        return {
            n: (self._series[n].steps.tolist(), self._series[n].values.tolist()) for n in self.names
        }

    def arrays(self) -> dict[str, tuple[array[int], array[float]]]:
        """The history as the arrays it is kept in (not copies: do not modify)."""
        return {n: (self._series[n].steps, self._series[n].values) for n in self.names}

    def take(self) -> list[Outgoing]:
        """The messages that bring the browser up to date: resets first, then appends."""
        resets: list[str] = []
        appends: list[str] = []
        for name in self.names:
            series = self._series[name]
            new = len(series.steps) - series.sent
            if new <= 0:
                continue
            if series.in_browser + new > self.max_points:
                resets.append(name)
            else:
                appends.append(name)
        out = []
        if resets:
            out.append(self._reset(resets))
        if appends:
            out.append(self._append(appends))
        return out

    def resync(self) -> list[Outgoing]:
        """A reset of every metric, for a browser that lost track (a reloaded page)."""
        return [self._reset(self.names, full=True)] if self._series else []

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _append(self, names: list[str]) -> Outgoing:
        meta, buffers = [], []
        for name in names:
            series = self._series[name]
            steps = np.frombuffer(series.steps, dtype=np.int64)[series.sent :]
            values = np.frombuffer(series.values, dtype=np.float64)[series.sent :]
            buffers += [_f64le(steps), _f64le(values)]
            meta.append({"name": name, "n": len(steps), "head": 0})
            series.in_browser += len(steps)
            series.sent = len(series.steps)
        return Outgoing({"type": "append", "seq": self._next_seq(), "series": meta}, buffers)

    def _reset(self, names: list[str], *, full: bool = False) -> Outgoing:
        meta, buffers = [], []
        for name in names:
            series = self._series[name]
            steps = np.frombuffer(series.steps, dtype=np.int64).astype(np.float64)
            values = np.frombuffer(series.values, dtype=np.float64)
            n = len(steps)
            if n <= self.max_points:
                head = 0
                xs, ys = steps, values
            else:
                cut = n - self.tail_points
                hx, hy = lttb_arrays(*finite_xy(steps[:cut], values[:cut]), self.head_points)
                head = len(hx)
                xs = np.concatenate([hx, steps[cut:]])
                ys = np.concatenate([hy, values[cut:]])
            buffers += [_f64le(xs), _f64le(ys)]
            meta.append({"name": name, "n": len(xs), "head": head})
            series.in_browser = len(xs)
            series.sent = n
        content: dict[str, Any] = {"type": "reset", "seq": self._next_seq(), "series": meta}
        if full:
            content["full"] = True  # every metric: the answer to a resync
        return Outgoing(content, buffers)


def _f64le(a: Any) -> bytes:
    return bytes(np.ascontiguousarray(a, dtype="<f8").tobytes())
