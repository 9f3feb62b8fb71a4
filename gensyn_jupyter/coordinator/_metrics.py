"""``GET /metrics``: the coordinator in the Prometheus text exposition format (0.0.4).

Everything but the byte counters is read from the database, so the figures
survive a restart and agree between replicas of one database:

- ``gensyn_tasks{state}``: tasks in each state (every state, zeros included);
- ``gensyn_queue_depth``: tasks waiting for a provider (``queued``);
- ``gensyn_providers{state}``: providers ``idle``, ``busy`` or ``offline``;
- ``gensyn_lease_latency_seconds``: histogram of the time from ``queued`` to
  ``running`` (a task re-queued counts again from its new ``queued``);
- ``gensyn_blob_bytes_received_total`` / ``gensyn_blob_bytes_sent_total``:
  blob bytes moved by this process since it started (counters);
- ``gensyn_blobs_corrupt_total``: blobs found corrupted on disk and moved aside;
- ``gensyn_events_total``: task events stored (metrics, output, states);
- ``gensyn_up`` and ``gensyn_draining`` (1 while a SIGTERM drains the process).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select

from ..protocol import TaskState
from ._context import Context
from ._db import EventRow, TaskRow
from ._providers import list_providers

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "LeaseLatency", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_PROVIDER_STATES = ("idle", "busy", "offline")


class LeaseLatency:
    """Queued-to-running times, read incrementally from the ``state`` events.

    Each scrape reads only the state events after the last one it saw, so
    the cost does not grow with the history (the first scrape after a start
    reads it all once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor = 0
        self._queued_at: dict[str, float] = {}
        self.counts = [0] * len(LATENCY_BUCKETS)
        self.total = 0
        self.sum = 0.0

    def update(self, ctx: Context) -> None:
        with self._lock, ctx.db.read() as session:
            rows = session.execute(
                select(EventRow.id, EventRow.task_id, EventRow.data, EventRow.ts)
                .where(EventRow.kind == "state", EventRow.id > self._cursor)
                .order_by(EventRow.id)
            ).all()
            for event_id, task_id, data, ts in rows:
                self._cursor = event_id
                try:
                    state = json.loads(data).get("state")
                except (ValueError, AttributeError):
                    continue
                if state == TaskState.QUEUED.value:
                    self._queued_at[task_id] = ts
                elif state == TaskState.RUNNING.value and task_id in self._queued_at:
                    self._observe(max(0.0, ts - self._queued_at.pop(task_id)))
                elif state in {s.value for s in TaskState if s.terminal}:
                    self._queued_at.pop(task_id, None)

    def _observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1


def _tasks_by_state(ctx: Context) -> tuple[dict[str, int], int]:
    with ctx.db.read() as session:
        rows = session.execute(select(TaskRow.state, func.count()).group_by(TaskRow.state)).all()
        events = int(session.scalar(select(func.max(EventRow.id))) or 0)
    return {str(state): int(n) for state, n in rows}, events


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_metrics(ctx: Context, latency: LeaseLatency, *, draining: bool) -> str:
    """The exposition text of one scrape (blocking: run it off the event loop)."""
    tasks, events = _tasks_by_state(ctx)
    providers: Counter[str] = Counter(str(p.state) for p in list_providers(ctx))
    latency.update(ctx)
    lines: list[str] = []
    lines += _family("gensyn_up", "gauge", "1 while the coordinator serves")
    lines.append("gensyn_up 1")
    lines += _family("gensyn_draining", "gauge", "1 while a SIGTERM drains the coordinator")
    lines.append(f"gensyn_draining {int(draining)}")
    lines += _family("gensyn_tasks", "gauge", "tasks known to the coordinator, by state")
    lines += [f'gensyn_tasks{{state="{s.value}"}} {tasks.get(s.value, 0)}' for s in TaskState]
    lines += _family("gensyn_queue_depth", "gauge", "tasks queued, waiting for a provider")
    lines.append(f"gensyn_queue_depth {tasks.get(TaskState.QUEUED.value, 0)}")
    lines += _family("gensyn_providers", "gauge", "registered providers, by state")
    states: Iterable[str] = sorted(set(_PROVIDER_STATES) | set(providers))
    lines += [f'gensyn_providers{{state="{s}"}} {providers.get(s, 0)}' for s in states]
    lines += _family(
        "gensyn_lease_latency_seconds", "histogram", "time from queued to running, per lease"
    )
    with latency._lock:
        for bound, count in zip(LATENCY_BUCKETS, latency.counts, strict=True):
            lines.append(f'gensyn_lease_latency_seconds_bucket{{le="{bound:g}"}} {count}')
        lines.append(f'gensyn_lease_latency_seconds_bucket{{le="+Inf"}} {latency.total}')
        lines.append(f"gensyn_lease_latency_seconds_sum {_number(latency.sum)}")
        lines.append(f"gensyn_lease_latency_seconds_count {latency.total}")
    blobs = ctx.blobs
    lines += _family(
        "gensyn_blob_bytes_received_total", "counter", "blob bytes uploaded to this process"
    )
    lines.append(f"gensyn_blob_bytes_received_total {blobs.bytes_in}")
    lines += _family("gensyn_blob_bytes_sent_total", "counter", "blob bytes served by this process")
    lines.append(f"gensyn_blob_bytes_sent_total {blobs.bytes_out}")
    lines += _family(
        "gensyn_blobs_corrupt_total", "counter", "blobs found corrupted on disk and moved aside"
    )
    lines.append(f"gensyn_blobs_corrupt_total {blobs.corrupt_found}")
    lines += _family("gensyn_events_total", "counter", "task events stored (the newest event id)")
    lines.append(f"gensyn_events_total {events}")
    return "\n".join(lines) + "\n"
