"""``GET /gensyn/api/events``: the coordinator's change stream, relayed as server-sent events.

The sidebar panel opens it with ``EventSource`` while it is visible and
refreshes when something arrives (see ``docs/panel.md``); errors before the
stream starts are JSON like every other route (the browser's ``EventSource``
then fails, and the panel polls until a retry succeeds).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from ..config import read_session_token
from ._errors import ApiError
from ._handlers import API_PREFIX, Backend, _Handler
from ._relay import EventRelay

__all__ = ["EventsBackend", "event_handlers"]

_MAX_ID = 2**63 - 1


class EventsBackend(Backend, Protocol):
    """What the events route needs from the extension app."""

    @property
    def events_heartbeat_seconds(self) -> float: ...

    @property
    def relays(self) -> set[EventRelay]: ...


def resume_point(header: str | None, query: str | None) -> int | None:
    """The event id to resume after: ``Last-Event-ID``, else ``after``, else ``None``.

    Raises
    ------
    ApiError
        422 naming the field when it is not an id (an integer from 0 to 2**63-1).
    """
    for field, value in (("Last-Event-ID", header), ("after", query)):
        if value is None or not value.strip():
            continue
        try:
            number = int(value.strip())
        except ValueError:
            raise ApiError(422, f"{field} must be the id of an event (an integer)", field) from None
        if not 0 <= number <= _MAX_ID:
            raise ApiError(422, f"{field} must be between 0 and {_MAX_ID}", field)
        return number
    return None


class EventsHandler(_Handler):
    """``GET /gensyn/api/events?after=&network=``: an SSE stream until the browser leaves."""

    backend: EventsBackend
    _relay: EventRelay | None = None

    @web.authenticated
    @authorized
    async def get(self) -> None:
        network = self.network()
        after = resume_point(
            self.request.headers.get("Last-Event-ID"), self.get_query_argument("after", None)
        )
        relay = EventRelay(
            self.backend.proxy,
            network.url,
            after=after,
            token=lambda: read_session_token(network.url),
            heartbeat=self.backend.events_heartbeat_seconds,
        )
        self._relay = relay
        self.backend.relays.add(relay)
        try:
            await relay.open()
            self.set_status(200)
            self.set_header("Content-Type", "text/event-stream; charset=utf-8")
            self.set_header("Cache-Control", "no-cache, no-store")
            self.set_header("X-Accel-Buffering", "no")  # a proxy must not buffer it
            self.write(": gensyn events of " + network.url + "\n\n")
            await self.flush()
            async for chunk in relay.chunks():
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass  # the browser went away
        finally:
            await relay.aclose()
            self.backend.relays.discard(relay)
        with contextlib.suppress(StreamClosedError):
            self.finish(set_content_type="text/event-stream; charset=utf-8")

    def on_connection_close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        super().on_connection_close()


def event_handlers(backend: EventsBackend) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The events route, relative to the server's ``base_url``."""
    return [(f"{API_PREFIX}/events", EventsHandler, {"backend": backend})]
