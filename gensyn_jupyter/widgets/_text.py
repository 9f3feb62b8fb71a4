"""The monitor without a browser: one progress line, redrawn with ``\\r``."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..protocol import format_eth
from ._format import Rate, fmt_duration, fmt_int, fmt_value
from ._series import coerce_point

__all__ = ["TextProgress"]


class TextProgress:
    """A tqdm-style progress line for plain IPython, scripts and logs.

    It has the methods of :class:`~gensyn_jupyter.widgets.TrainingMonitor`
    the kernel drives, and shows, on one line redrawn at most 5 times a
    second: state, steps (of the total when known), steps per second, the
    last loss, elapsed time and the ETA. Log text is written through, above
    the line; :meth:`finish` ends the line and writes a summary. Thread-safe.

    Parameters
    ----------
    stream
        Where to write, usually ``sys.stdout``.
    """

    min_interval = 0.2  # seconds between two redraws of the line

    def __init__(self, *, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._state = "submitted"
        self._provider = ""
        self._steps = 0
        self._total: int | None = None
        self._elapsed = 0.0
        self._loss: float | None = None
        self._rate = Rate()
        self._last_draw = -1e9
        self._drawn = 0  # length of the line on screen, 0 when none
        self._mid_line = False  # the last log text did not end with a newline
        self._done = False

    def set_status(
        self,
        *,
        state: str,
        message: str,
        ts: float,
        provider: str | None = None,
        device: str | None = None,
    ) -> None:
        """Show a new state (redrawn at once); ``message`` and ``ts`` are not shown."""
        del message, ts
        with self._lock:
            if provider:
                self._provider = f"{provider} ({device})" if device else provider
            changed = state != self._state
            self._state = state
            self._draw(force=changed)

    def add_points(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Remember the last ``loss`` of ``points`` (``{"step", "name", "value"}``)."""
        with self._lock:
            for point in points:
                parsed = coerce_point(point)
                if parsed is not None and parsed[1] == "loss":
                    self._loss = parsed[2]
            self._draw()

    def add_log(self, text: str, *, stream: str = "stdout") -> None:
        """Write remote output through, above the progress line."""
        del stream
        if not text:
            return
        with self._lock:
            self._clear()
            self._stream.write(text)
            self._mid_line = not text.endswith("\n")
            self._stream.flush()
            if not self._mid_line:
                self._draw(force=True)

    def set_progress(
        self, *, steps: int, total_steps: int | None, elapsed: float, gpu_seconds: float
    ) -> None:
        """Update steps, total and elapsed time (``gpu_seconds`` is shown by :meth:`finish`)."""
        del gpu_seconds
        with self._lock:
            self._steps = steps
            self._total = total_steps or None
            self._elapsed = elapsed
            self._rate.update(elapsed, steps)
            self._draw()

    def flush(self) -> None:
        """Redraw the line now."""
        with self._lock:
            self._draw(force=True)

    def finish(self, *, state: str, summary: Mapping[str, Any]) -> None:
        """Draw the line a last time, end it, and write a one-line summary."""
        with self._lock:
            if self._done:
                return
            self._state = state
            if summary.get("steps") is not None:
                self._steps = int(summary["steps"])
            self._draw(force=True)
            self._stream.write("\n")
            self._drawn = 0
            self._done = True
            self._stream.write(_summary_line(state, summary) + "\n")
            self._stream.flush()

    def _line(self) -> str:
        parts = [f"[gensyn] {self._state}"]
        if self._provider:
            parts[0] += f" on {self._provider}"
        steps = fmt_int(self._steps)
        parts.append(f"{steps}/{fmt_int(self._total)} steps" if self._total else f"{steps} steps")
        rate = self._rate.value
        if rate is not None:
            parts.append(f"{rate:.1f} steps/s")
        if self._loss is not None:
            parts.append(f"loss {fmt_value(self._loss)}")
        parts.append(fmt_duration(self._elapsed))
        if rate and self._total and self._steps < self._total and not self._done:
            parts.append(f"ETA {fmt_duration((self._total - self._steps) / rate)}")
        return " · ".join(parts)

    def _clear(self) -> None:
        if self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._done or (not force and now - self._last_draw < self.min_interval):
            return
        self._last_draw = now
        line = self._line()
        if self._mid_line:
            self._stream.write("\n")
            self._mid_line = False
        pad = max(0, self._drawn - len(line))
        self._stream.write("\r" + line + " " * pad)
        self._drawn = len(line)
        self._stream.flush()


def _summary_line(state: str, summary: Mapping[str, Any]) -> str:
    words = [f"[gensyn] task {summary.get('task_id') or '?'} {state}"]
    if summary.get("provider"):
        device = f" ({summary['device']})" if summary.get("device") else ""
        words[0] += f" on {summary['provider']}{device}"
    if summary.get("steps") is not None:
        words.append(f"{fmt_int(int(summary['steps']))} steps")
    if summary.get("duration_s") is not None:
        words.append(fmt_duration(float(summary["duration_s"])))
    if summary.get("gpu_seconds") is not None:
        words.append(f"{float(summary['gpu_seconds']):.1f} GPU·s")
    first, last = summary.get("loss_first"), summary.get("loss_last")
    if first is not None and last is not None:
        words.append(f"loss {fmt_value(float(first))} → {fmt_value(float(last))}")
    if summary.get("provider_paid_wei") is not None:
        words.append(
            f"paid {format_eth(int(summary['provider_paid_wei']))}, "
            f"refunded {format_eth(int(summary.get('refunded_wei') or 0))}"
        )
    return " · ".join(words)
