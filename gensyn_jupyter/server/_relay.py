"""The coordinator's ``GET /v1/events`` stream, relayed to the browser as SSE text.

The relay signs in as the kernel does: with the session token stored for the
network (``read_session_token``), so the stream carries the tasks the kernel
submits (its account's, plus those without an account). When that token
changes (the wallet signed in as another account) the relay reconnects
upstream with the new one, resuming after the last event it passed on; the
browser sees one stream. A token the coordinator refuses (expired, or the
coordinator restarted) is dropped: the stream then carries public changes only.

Upstream events are checked before they are passed on: ``task`` must be an
:class:`~gensyn_jupyter.protocol.Event`, ``ready`` a JSON object,
``providers`` a JSON list; anything else is dropped. A comment goes out
whenever nothing else did for ``heartbeat`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent
from pydantic import ValidationError

from ..protocol import Event
from ._errors import ApiError
from ._proxy import CoordinatorProxy, _json_of

__all__ = ["EventRelay", "format_sse"]

_log = logging.getLogger("gensyn_jupyter.server")
_END = object()


def format_sse(event: str, data: str, event_id: str | None = None) -> str:
    """One SSE message (``data`` holds no newline: it is compact JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def _checked(sse: ServerSentEvent) -> str | None:
    """The message to pass on for an upstream event, or ``None`` to drop it."""
    try:
        if sse.event == "task":
            event = Event.model_validate_json(sse.data)
            return format_sse("task", event.model_dump_json(), str(event.id))
        body: Any = json.loads(sse.data)
    except (ValueError, ValidationError):
        return None
    if sse.event == "ready" and isinstance(body, dict):
        return format_sse("ready", json.dumps(body, separators=(",", ":")), sse.id or None)
    if sse.event == "providers" and isinstance(body, list):
        return format_sse("providers", json.dumps(body, separators=(",", ":")))
    return None


class EventRelay:
    """One browser's relay of a coordinator's change stream.

    Parameters
    ----------
    proxy
        The server's client of coordinators.
    network
        The coordinator's URL.
    after
        Resume after this event id (``None``: from the newest event).
    token
        Reads the session token to use now (``None``: anonymous).
    heartbeat
        Seconds of silence after which a comment is sent.
    tick
        How often the token is looked at again (and a closed browser noticed).
    """

    def __init__(
        self,
        proxy: CoordinatorProxy,
        network: str,
        *,
        after: int | None,
        token: Callable[[], str | None],
        heartbeat: float = 15.0,
        tick: float = 1.0,
    ) -> None:
        self.proxy = proxy
        self.network = network
        self.last_id = after
        self._token_of = token
        self._token: str | None = None
        self._refused: str | None = None
        self.heartbeat = heartbeat
        self.tick = tick
        self.closed = False
        self._response: httpx.Response | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    async def open(self) -> None:
        """Connect upstream (before the browser gets its 200).

        Raises
        ------
        ApiError
            The coordinator's 4xx (404 when it has no event stream), 502 when
            it cannot be reached or answers something else, 504 when slow.
        """
        token = self._token_of()
        response = await self._connect(token)
        if response.status_code == 401 and token is not None:
            await response.aclose()  # the session is gone: carry on without it
            self._refused, token = token, None
            response = await self._connect(token)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            if response.status_code == 404:
                raise ApiError(
                    404,
                    f"the coordinator at {self.network} has no event stream (GET /v1/events); "
                    "it is older than this extension: poll instead",
                )
            _json_of(self.network, response)  # raises the coordinator's 4xx, else 502
            raise ApiError(502, f"{self.network} answered GET /v1/events with no stream")
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aclose()
            raise ApiError(502, f"{self.network} did not answer GET /v1/events with a stream")
        await self._switch(response, token)

    async def _connect(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        return await self.proxy.open_stream(self.network, "/v1/events", headers=headers)

    async def _switch(self, response: httpx.Response, token: str | None) -> None:
        await self._stop_reading()
        self._response, self._token = response, token
        self._queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(response, self._queue))

    @staticmethod
    async def _read(response: httpx.Response, queue: asyncio.Queue[object]) -> None:
        try:
            async for sse in EventSource(response).aiter_sse():
                await queue.put(sse)
            await queue.put(_END)
        except Exception as exc:  # whatever broke the stream ends this relay, not the server
            await queue.put(exc)

    async def chunks(self) -> AsyncIterator[str]:
        """The SSE text to send, until the upstream stream ends or :meth:`close` is called."""
        quiet_since = time.monotonic()
        while not self.closed:
            try:
                item = await asyncio.wait_for(self._queue.get(), self.tick)
            except TimeoutError:
                if not await self._follow_token():
                    return
                if time.monotonic() - quiet_since >= self.heartbeat:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            if item is _END or isinstance(item, BaseException):
                if isinstance(item, BaseException):
                    _log.info("gensyn: the event stream of %s broke: %s", self.network, item)
                return
            assert isinstance(item, ServerSentEvent)
            message = _checked(item)
            if message is None:
                continue
            if item.event in ("task", "ready") and item.id:
                with contextlib.suppress(ValueError):
                    self.last_id = int(item.id)
            quiet_since = time.monotonic()
            yield message

    async def _follow_token(self) -> bool:
        """Reconnect when the stored session changed; False when that failed."""
        token = self._token_of()
        if token == self._token or (token is not None and token == self._refused):
            return True
        try:
            response = await self._connect(token)
        except ApiError:
            return False
        if response.status_code == 401 and token is not None:
            await response.aclose()
            self._refused = token  # keep the stream we have
            return True
        if response.status_code != 200:
            await response.aclose()
            return False
        await self._switch(response, token)
        return True

    def close(self) -> None:
        """Stop now (the browser went away): :meth:`chunks` ends at once."""
        self.closed = True
        self._queue.put_nowait(_END)

    async def _stop_reading(self) -> None:
        reader, response = self._reader, self._response
        self._reader = self._response = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if response is not None:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection (and end :meth:`chunks`)."""
        self.close()
        await self._stop_reading()
