"""``GET /v1/events``: one SSE stream of what changed, for a sidebar panel.

Three kinds of event:

- ``ready`` (first, once): ``{"account": address|null, "last_event_id": N}``,
  with SSE id ``N``: whose tasks the stream carries, and where it starts.
- ``task``: an :class:`~gensyn_jupyter.protocol.Event` of a task the caller
  may see (its own, or one without an account), SSE id = the event's id.
  Only ``state`` events unless ``kind`` names others.
- ``providers``: ``[{"id", "state", "tasks_done"}, ...]`` whenever that list
  changes (a provider joins, goes busy, idle or offline); no SSE id.

It starts at the newest event (``after``/``Last-Event-ID`` resume after an
id) and never ends on its own; comments keep the connection alive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..protocol import Event, EventKind
from ._auth import OptionalAccount
from ._context import Context, Ctx, in_thread
from ._errors import error_responses
from ._feed import head_event_id, provider_digest, visible_events
from ._routes_tasks import _MAX_ID, _resume_point

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])

_BATCH = 500


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _changes(
    ctx: Context,
    account: str | None,
    cursor: int,
    kinds: list[str],
    token: asyncio.Event,
    providers: list[dict[str, Any]],
) -> AsyncIterator[ServerSentEvent]:
    ready = {"account": account, "last_event_id": cursor}
    yield ServerSentEvent(id=str(cursor), event="ready", data=_json(ready))
    while True:
        cursor, batch = await in_thread(visible_events, ctx, account, cursor, kinds, _BATCH)
        for event in batch:
            yield _task_event(event)
        digest = await in_thread(provider_digest, ctx)
        if digest != providers:
            providers = digest
            yield ServerSentEvent(event="providers", data=_json(digest))
        if len(batch) < _BATCH:
            await ctx.events.wait(token, ctx.settings.fallback_poll_seconds)
        token = ctx.events.token()


def _task_event(event: Event) -> ServerSentEvent:
    return ServerSentEvent(id=str(event.id), event="task", data=event.model_dump_json())


@router.get(
    "",
    summary="What changed: the caller's task events and provider changes (SSE)",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "text/event-stream: `ready` once, then `task` (an Event, SSE id = "
            "its id) and `providers` (a list of {id, state, tasks_done}) events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 422),
    },
)
async def stream_changes(
    ctx: Ctx,
    account: OptionalAccount,
    after: Annotated[
        int | None,
        Query(ge=0, le=_MAX_ID, description="resume after this event id (default: the newest)"),
    ] = None,
    kind: Annotated[
        list[EventKind] | None,
        Query(description="task event kinds to send (repeatable; default: state)"),
    ] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this id")] = None,
) -> EventSourceResponse:
    """Task events the caller may see, and provider changes, as they happen.

    A session token (``Authorization: Bearer``) adds that account's own tasks
    to those without an account; an unknown or expired token is 401.
    """
    token = ctx.events.token()
    if after is None and not (last_event_id or "").strip():
        start = await in_thread(head_event_id, ctx)
    else:
        start = _resume_point(after or 0, last_event_id)
    providers = await in_thread(provider_digest, ctx)
    kinds: list[str] = sorted(set(kind or ["state"]))
    return EventSourceResponse(
        _changes(ctx, account, start, kinds, token, providers),
        ping=ctx.settings.sse_ping_seconds,
    )
