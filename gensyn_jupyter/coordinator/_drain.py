"""Graceful shutdown: on SIGTERM the coordinator drains before it stops.

Draining means: no new lease is handed out (a provider's lease request answers
503 at once, and the long polls already waiting end with 204 instead of
claiming a task), while every other request in flight (an upload, a result,
an event post) runs to its end. uvicorn then stops accepting connections and
waits up to its graceful-shutdown timeout for those requests.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Drain", "DrainMiddleware", "draining_server"]

_LEASE_POLL = re.compile(r"^/v1/providers/[^/]+/lease$")


class Drain:
    """Set once the process is asked to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def start(self) -> None:
        self._event.set()

    @property
    def active(self) -> bool:
        return self._event.is_set()


class DrainMiddleware:
    """Refuses new lease polls while draining and ends the waiting ones."""

    def __init__(self, app: ASGIApp, *, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _LEASE_POLL.match(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        if self.drain.active:
            body = json.dumps(
                {
                    "detail": "the coordinator is shutting down and hands out no lease; "
                    "ask again in a few seconds (it restarts or another replica answers)",
                    "field": None,
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"2"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        drain = self.drain

        async def receiving() -> Message:
            # The long poll checks request.is_disconnected() between claims: a
            # drain looks like a disconnect to it, so it stops without a claim.
            if drain.active:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(scope, receiving, send)


def draining_server(config: Any, drain: Drain) -> Any:
    """A ``uvicorn.Server`` that starts ``drain`` as soon as a stop signal arrives."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            drain.start()
            super().handle_exit(sig, frame)

    return _Server(config)
