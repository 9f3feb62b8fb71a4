"""The live training monitor: an anywidget fed from the kernel's event thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import anywidget
import traitlets

from ._format import Rate
from ._series import SeriesBook
from ._snapshot import render_snapshot

__all__ = ["TrainingMonitor"]

_ESM_PATH = Path(__file__).with_name("static") / "monitor.js"
# Shown instead of the chart when the bundle was not built (a source checkout
# without `npm run build:widget`); the saved snapshot still works.
_MISSING_ESM = """
export default { render({ el }) {
  el.textContent = "gensyn monitor: its JavaScript is not built (run `npm run build:widget`).";
} };
"""
_LOG_LINES = 200
_LOG_LINE_CHARS = 2000
_IDLE_THREAD_EXIT = 30.0  # seconds


class TrainingMonitor(anywidget.AnyWidget):
    """Live chart, status, progress, cost and log of one remote training task.

    The kernel creates one per ``%%gensyn_train`` cell, displays it with
    ``display(monitor, display_id=True)``, feeds it from its event thread
    (:meth:`set_status`, :meth:`add_points`, :meth:`add_log`,
    :meth:`set_progress`, all thread-safe), calls :meth:`finish` when the
    task ends, and then updates that display with the monitor once more.

    **What the output holds.** The display's MIME bundle has three entries:
    the widget view, ``text/html`` (the static snapshot: an SVG chart and a
    summary table, see :func:`render_snapshot`) and ``text/plain``. Updating
    the display after :meth:`finish` re-renders the bundle, so the saved
    ``.ipynb`` holds the final curve. JupyterLab (with the kernel alive)
    draws the widget, which stays interactive; nbconvert, GitHub and other
    viewers without the widget's kernel show the ``text/html`` snapshot.
    JupyterLab itself, reopening the notebook without the kernel that made
    the widget, says "Error displaying widget: model not found" (ipywidgets
    never falls back to the other entries of the bundle); the snapshot is
    in the file all the same. See ``docs/monitor.md``.

    **How points travel.** Traitlets carry only small state. Points go as
    custom messages with binary float64 buffers (``append``), at most
    ``1 / min_interval`` times a second. The kernel keeps every point; when a
    metric's view in the browser would pass ``max_points``, it is replaced
    (``reset``) by an LTTB-downsampled history of ``head_points`` plus the
    last ``tail_points`` at full resolution. A browser that lost track (a
    reloaded page) asks for a ``resync``, which the kernel answers once it is
    idle.

    **Cancel** goes from the browser straight to the Jupyter server extension
    (``POST {baseUrl}gensyn/api/tasks/{task_id}/cancel``): a busy kernel
    reads no widget message until the cell ends.
    """

    _esm = _ESM_PATH if _ESM_PATH.is_file() else _MISSING_ESM

    task_id = traitlets.Unicode("").tag(sync=True)
    network = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("submitted").tag(sync=True)
    provider = traitlets.Unicode("").tag(sync=True)
    device = traitlets.Unicode("").tag(sync=True)
    timeline = traitlets.List(traitlets.Dict()).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)
    total_steps = traitlets.Int(0).tag(sync=True)  # 0: unknown
    elapsed = traitlets.Float(0.0).tag(sync=True)
    gpu_seconds = traitlets.Float(0.0).tag(sync=True)
    throughput = traitlets.Float(0.0).tag(sync=True)  # steps/s, 0: unknown
    log_tail = traitlets.Unicode("").tag(sync=True)
    metrics = traitlets.List(traitlets.Unicode()).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    done = traitlets.Bool(False).tag(sync=True)
    # Identifies this model's point store in the browser (shared by its views).
    _store_key = traitlets.Unicode("").tag(sync=True)

    #: Seconds between two flushes of points, progress and log (20 a second).
    min_interval = 0.05
    #: Points of one metric the browser may hold before a reset.
    max_points = 4000
    #: Downsampled points at the head of a reset.
    head_points = 2000
    #: Most recent points a reset carries at full resolution.
    tail_points = 500

    def __init__(self, *, task_id: str, network: str) -> None:
        super().__init__(task_id=task_id, network=network, _store_key=uuid4().hex)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._book: SeriesBook | None = None
        self._log_lines: deque[str] = deque(maxlen=_LOG_LINES)
        self._log_partial = ""
        self._log_dirty = False
        self._progress: dict[str, Any] | None = None  # waiting for the next flush
        self._rate = Rate()
        self._last_flush = -1e9
        self._flusher: threading.Thread | None = None
        self._stopped = False
        self._summary: dict[str, Any] = {}
        self.on_msg(self._on_frontend_msg)

    # -- fed by the kernel -------------------------------------------------

    def set_status(
        self,
        *,
        state: str,
        message: str,
        ts: float,
        provider: str | None = None,
        device: str | None = None,
    ) -> None:
        """Record a state (a new timeline entry when it changed) and who runs the task.

        Parameters
        ----------
        state
            ``queued``, ``running``, ``committed``, ``verified``, ``settled`` ...
        message
            One line for people; the latest is shown in the status line.
        ts
            When it happened, seconds since the epoch.
        provider, device
            Who runs the task and on what (GPU name), when known.
        """
        with self._lock, self.hold_sync():
            entry = {"state": state, "message": message, "ts": ts}
            timeline = list(self.timeline)
            if timeline and timeline[-1].get("state") == state:
                timeline[-1] = {**timeline[-1], "message": message}
            else:
                timeline.append(entry)
            self.timeline = timeline
            self.status = state
            if provider:
                self.provider = provider
            if device:
                self.device = device

    def add_points(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Append metric points ``{"step": int, "name": str, "value": float}``.

        Thread-safe. Every point is kept; the browser gets them in batches,
        at most ``1 / min_interval`` times a second. Malformed points are
        skipped.
        """
        with self._lock:
            book = self._series()
            if book.add(points):
                self.metrics = book.names
            self._schedule()

    def add_log(self, text: str, *, stream: str = "stdout") -> None:
        """Append remote output to the log tail (the last 200 lines). Thread-safe.

        A carriage return rewrites its line, as a terminal would (progress
        bars stay one line); ``stream`` is accepted for symmetry with
        :class:`TextProgress` and not shown.
        """
        del stream
        if not text:
            return
        with self._lock:
            pieces = (self._log_partial + text).split("\n")
            for line in pieces[:-1]:
                self._log_lines.append(_last_rewrite(line)[:_LOG_LINE_CHARS] + "\n")
            self._log_partial = _last_rewrite(pieces[-1])[-_LOG_LINE_CHARS:]
            self._log_dirty = True
            self._schedule()

    def set_progress(
        self, *, steps: int, total_steps: int | None, elapsed: float, gpu_seconds: float
    ) -> None:
        """Update steps done (of ``total_steps``, None when unknown), elapsed and GPU seconds.

        Thread-safe; applied at once when the last update is older than
        ``min_interval``, else at the next flush.
        """
        with self._lock:
            rate = self._rate.update(elapsed, steps)
            self._progress = {
                "steps": int(steps),
                "total_steps": int(total_steps or 0),
                "elapsed": float(elapsed),
                "gpu_seconds": float(gpu_seconds),
                "throughput": float(rate or 0.0),
            }
            self._schedule()

    def flush(self) -> None:
        """Send whatever is waiting (points, progress, log) now."""
        with self._lock:
            self._flush_locked()

    def finish(self, *, state: str, summary: Mapping[str, Any]) -> None:
        """Flush everything, record the final state and summary, and set ``done``.

        ``summary`` holds what the kernel knows of the run (``task_id``,
        ``state``, ``provider``, ``device``, ``steps``, ``duration_s``,
        ``gpu_seconds``, ``loss_first``, ``loss_last``; any may be None); it
        goes into :meth:`snapshot`. Update the display afterwards so the
        saved output holds the final snapshot.
        """
        with self._lock:
            self._stop_flusher()
            self._flush_locked()
            self._summary = {k: v for k, v in summary.items() if v is not None}
            with self.hold_sync():
                now = time.time()
                if self.status != state:
                    self.set_status(state=state, message=state, ts=now)
                if self.timeline:  # the clock stops: elapsed covers the whole timeline
                    self.elapsed = max(self.elapsed, now - float(self.timeline[0]["ts"]))
                steps = self._summary.get("steps")
                if isinstance(steps, int) and steps > self.steps:
                    self.steps = steps
                gpu = self._summary.get("gpu_seconds")
                if isinstance(gpu, int | float):
                    self.gpu_seconds = float(gpu)
                duration = self._summary.get("duration_s")
                if isinstance(duration, int | float) and duration > 0 and self.steps:
                    self.throughput = self.steps / duration
                self.done = True

    def close(self) -> None:
        """Stop the flush thread and close the widget."""
        lock = getattr(self, "_lock", None)  # close() also runs from __del__
        if lock is not None:
            with lock:
                self._stop_flusher()
        super().close()

    # -- read back ---------------------------------------------------------

    def history(self) -> dict[str, tuple[list[int], list[float]]]:
        """Every point received, by metric: ``{name: (steps, values)}``, ``loss`` first."""
        with self._lock:
            return self._series().history()

    def snapshot(self) -> dict[str, str]:
        """The static snapshot of the run so far: ``{"text/plain", "text/html"}``."""
        with self._lock:
            history = self._series().arrays()
            summary = self._current_summary(history)
            return render_snapshot(history, summary)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        return {**data, **self.snapshot()}, metadata

    # -- internals -----------------------------------------------------------

    def _series(self) -> SeriesBook:
        if self._book is None:
            self._book = SeriesBook(
                max_points=self.max_points,
                head_points=self.head_points,
                tail_points=self.tail_points,
            )
        return self._book

    def _current_summary(self, history: Mapping[str, Any]) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "task_id": self.task_id or None,
            "state": self.status or None,
            "provider": self.provider or None,
            "device": self.device or None,
            "steps": self.steps or None,
            "gpu_seconds": self.gpu_seconds or None,
        }
        loss = history.get("loss")
        if loss is not None and len(loss[1]):
            summary["loss_first"] = loss[1][0]
            summary["loss_last"] = loss[1][-1]
        summary.update(self._summary)
        return summary

    def _schedule(self) -> None:
        """Flush now when the last flush is old enough, else wake the flush thread."""
        if self._stopped or time.monotonic() - self._last_flush >= self.min_interval:
            self._flush_locked()
        else:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name=f"gensyn-monitor-{self.task_id}", daemon=True
                )
                self._flusher.start()
            self._wake.notify()

    def _dirty(self) -> bool:
        return bool(
            self._progress is not None
            or self._log_dirty
            or (self._book is not None and self._book.pending())
        )

    def _flush_loop(self) -> None:
        """Flush what waits once ``min_interval`` has passed; end after 30 s with nothing to do.

        Ending when idle means a monitor that is never finished does not keep
        a thread (and itself) alive; the next update starts a new one.
        """
        with self._lock:
            try:
                while not self._stopped:
                    if not self._dirty():
                        if not self._wake.wait(_IDLE_THREAD_EXIT) and not self._dirty():
                            return
                        continue
                    delay = self._last_flush + self.min_interval - time.monotonic()
                    if delay > 0:
                        self._wake.wait(delay)
                        continue
                    self._flush_locked()
            finally:
                if self._flusher is threading.current_thread():
                    self._flusher = None

    def _stop_flusher(self) -> None:
        self._stopped = True
        self._wake.notify_all()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        with self.hold_sync():
            if self._progress is not None:
                for name, value in self._progress.items():
                    setattr(self, name, value)
                self._progress = None
            if self._log_dirty:
                self.log_tail = "".join(self._log_lines) + self._log_partial
                self._log_dirty = False
        if self._book is not None:
            for out in self._book.take():
                self.send(out.content, out.buffers)

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            with self._lock:
                self._flush_locked()
                for out in self._series().resync():
                    self.send(out.content, out.buffers)


def _last_rewrite(line: str) -> str:
    """What a terminal shows of a line with carriage returns: the text after the last one."""
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""
