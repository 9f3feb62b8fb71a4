"""The threads between a worker and the coordinator: its output pipes into an outbox."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import IO, Any

from ..protocol import EventIn

__all__ = ["Outbox", "StderrTail", "discard_loop", "pump_control", "pump_text"]

_STDERR_TAIL = 4000


class Outbox:
    """Events waiting to be posted, merged so one flush is one request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[EventIn] = []
        self.ready = threading.Event()

    def add(self, kind: str, **data: object) -> None:
        self.ready.set()
        with self._lock:
            last = self._events[-1] if self._events else None
            if last is not None and last.kind == kind and kind in ("stdout", "stderr"):
                last.data["text"] = str(last.data["text"]) + str(data["text"])
            elif last is not None and last.kind == kind == "metrics":
                points = last.data["points"]
                assert isinstance(points, list) and isinstance(data["points"], list)
                points.extend(data["points"])
            else:
                self._events.append(EventIn.model_validate({"kind": kind, "data": dict(data)}))

    def drain(self) -> list[EventIn]:
        with self._lock:
            self.ready.clear()
            events, self._events = self._events, []
        return events

    def requeue(self, events: list[EventIn]) -> None:
        """Put back events a failed post did not deliver, ahead of newer ones."""
        with self._lock:
            self._events[:0] = events
            self.ready.set()


def discard_loop(outbox: Outbox, done: threading.Event) -> None:
    """A replica's events go nowhere (the user follows the first run), but are drained."""
    while not done.is_set():
        outbox.ready.wait(0.2)
        outbox.drain()
    outbox.drain()


class StderrTail:
    """Keeps the end of the worker's stderr for crash messages."""

    def __init__(self) -> None:
        self.text = ""

    def add(self, text: str) -> None:
        self.text = (self.text + text)[-_STDERR_TAIL:]


def pump_text(
    stream: IO[bytes] | None, kind: str, outbox: Outbox, tee: Callable[[str], None] | None
) -> None:
    if stream is None:
        return
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        text = chunk.decode("utf-8", errors="replace")
        outbox.add(kind, text=text)
        if tee is not None:
            tee(text)


def pump_control(
    stream: IO[bytes], outbox: Outbox, on_checkpoint: Callable[[dict[str, Any]], None] | None
) -> None:
    for raw in stream:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if message.get("type") == "metrics":
            outbox.add("metrics", points=list(message["points"]))
        elif message.get("type") == "log":
            outbox.add("log", message=str(message["message"]))
        elif message.get("type") == "checkpoint" and on_checkpoint is not None:
            on_checkpoint(message)
