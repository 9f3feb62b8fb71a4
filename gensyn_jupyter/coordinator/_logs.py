"""Structured logs (``--log-json``) and the coordinator's request log.

With JSON logs on, every record of the ``gensyn_jupyter`` and ``uvicorn``
loggers is one JSON object per line on stderr: ``ts``, ``level``, ``logger``,
``message`` and whatever the record carries in ``extra`` (``task_id``,
``lease_id``, ``provider_id``, ``method``, ``path``, ``status``,
``duration_ms``). The request log names the task, lease or provider a
request is about, so ``grep t_...`` (or a log query on ``task_id``) finds
everything that happened to one task.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JsonFormatter", "RequestLog", "configure_logging", "ids_in_path"]

_FIELDS = ("task_id", "lease_id", "provider_id", "method", "path", "status", "duration_ms")
_PATH_IDS = (
    ("task_id", re.compile(r"/v1/tasks/([^/]+)")),
    ("lease_id", re.compile(r"/v1/leases/([^/]+)")),
    ("provider_id", re.compile(r"/v1/providers/([^/]+)")),
)
_requests = logging.getLogger("gensyn_jupyter.coordinator.requests")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, json_logs: bool, level: int | None = None) -> None:
    """Send the coordinator's and uvicorn's records to stderr, as JSON or as text.

    The level defaults to INFO for JSON (every request) and WARNING for text.
    """
    if level is None:
        level = logging.INFO if json_logs else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("gensyn_jupyter", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # the request log below replaces uvicorn's access log (it names task ids)
    logging.getLogger("uvicorn.access").disabled = True
    _requests.disabled = not json_logs


def ids_in_path(path: str) -> dict[str, str]:
    """The task, lease or provider id a request path names (``/v1/tasks/t_1/events``...)."""
    found: dict[str, str] = {}
    for name, pattern in _PATH_IDS:
        match = pattern.match(path)
        if match:
            found[name] = match.group(1)
    return found


class RequestLog:
    """ASGI middleware: one record per HTTP request, with the ids it concerns.

    Only when the ``gensyn_jupyter.coordinator.requests`` logger is enabled
    (``--log-json``); long polls and event streams are logged when they end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _requests.disabled:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = str(scope.get("path", ""))
            _requests.info(
                "%s %s %d",
                scope.get("method"),
                path,
                status,
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    **ids_in_path(path),
                },
            )
