"""``/v1/tasks``: submit, read, list, cancel, and the event stream (SSE or JSON)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..protocol import TERMINAL_STATES, Event, SignedOrder, Task, TaskSpec, TaskState
from ._auth import OptionalAccount, RequiredAccount
from ._context import Context, Ctx, in_thread
from ._errors import ApiError, error_responses
from ._payments import accept_order
from ._tasks import cancel_task, check_visible, create_task, get_task, list_tasks, task_events

__all__ = ["router"]

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_BATCH = 500
_MAX_ID = 2**63 - 1
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


@router.post(
    "",
    status_code=201,
    response_model=Task,
    summary="Submit a task",
    responses=error_responses(400, 413, 422),
)
async def submit_task(spec: TaskSpec, ctx: Ctx, account: OptionalAccount) -> Task:
    """Queue a task whose bundle (and every blob it names) was uploaded.

    On a network with escrow the task waits in ``awaiting_approval`` for its
    owner's order (``POST /v1/tasks/{id}/order``); a session is required.
    """
    task = await in_thread(create_task, ctx, spec, account)
    ctx.queue.notify()
    ctx.events.notify()
    return task


@router.get(
    "",
    response_model=list[Task],
    summary="List tasks, newest first",
    responses=error_responses(422),
)
async def get_tasks(
    ctx: Ctx,
    viewer: OptionalAccount,
    state: TaskState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    account: Annotated[
        str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$", description="only this owner's tasks")
    ] = None,
) -> list[Task]:
    """The caller's tasks and those without an owner, newest first; ``state`` keeps only
    those in that state, ``account`` only that owner's (empty for another account)."""
    return await in_thread(list_tasks, ctx, state, limit, account, viewer)


@router.get(
    "/{task_id}", response_model=Task, summary="Read a task", responses=error_responses(404)
)
async def read_task(task_id: str, ctx: Ctx, viewer: OptionalAccount) -> Task:
    """The task as the coordinator knows it now: its owner's session only (404 for anyone
    else, as an unknown task); a task without an owner is read by anyone."""
    return await in_thread(get_task, ctx, task_id, viewer)


@router.post(
    "/{task_id}/cancel",
    response_model=Task,
    summary="Cancel a task",
    responses=error_responses(401, 404, 409),
)
async def cancel(task_id: str, ctx: Ctx, account: OptionalAccount) -> Task:
    """Cancel a task that has not ended (a cancelled one answers as it is).

    A paid task is cancelled only by its owner's session; for anyone else it
    is not found (404), as an unknown task is.
    """
    task = await in_thread(cancel_task, ctx, task_id, account)
    ctx.events.notify()
    return task


@router.post(
    "/{task_id}/order",
    response_model=Task,
    summary="Approve a paid task with its owner's signed, funded order",
    responses=error_responses(400, 401, 402, 403, 404, 409, 422),
)
async def post_order(task_id: str, signed: SignedOrder, ctx: Ctx, account: RequiredAccount) -> Task:
    """Check the EIP-712 signature, the nonce and the escrow on chain; queue the task."""
    task = await in_thread(accept_order, ctx, task_id, account, signed)
    ctx.queue.notify()
    ctx.events.notify()
    return task


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(id=str(event.id), event=event.kind, data=event.model_dump_json())


async def _stream(
    ctx: Context,
    task_id: str,
    after: int,
    token: asyncio.Event,
    state: TaskState,
    batch: list[Event],
) -> AsyncIterator[ServerSentEvent]:
    while True:
        for event in batch:
            yield _sse(event)
            after = event.id
            if event.kind == "state" and event.data.get("state") in _TERMINAL:
                return
        if not batch and state.terminal:
            return
        if len(batch) < _BATCH:
            await ctx.events.wait(token, ctx.settings.fallback_poll_seconds)
        token = ctx.events.token()
        state, batch = await in_thread(task_events, ctx, task_id, after, _BATCH)


def _resume_point(after: int, last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        value = int(last_event_id.strip())
    except ValueError:
        raise ApiError(
            422, "Last-Event-ID must be the id of an event (an integer)", "Last-Event-ID"
        ) from None
    if not 0 <= value <= _MAX_ID:
        raise ApiError(422, f"Last-Event-ID must be between 0 and {_MAX_ID}", "Last-Event-ID")
    return value


@router.get(
    "/{task_id}/events",
    summary="The task's events: an SSE stream, or a JSON list with ?format=json",
    response_class=EventSourceResponse,
    responses={
        200: {
            "model": list[Event],
            "description": "text/event-stream of Events (id: event id, event: kind, "
            "data: Event JSON); with format=json, the list of events after `after`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 422),
    },
)
async def stream_events(
    task_id: str,
    ctx: Ctx,
    viewer: OptionalAccount,
    after: Annotated[int, Query(ge=0, le=_MAX_ID, description="only events with a larger id")] = 0,
    format_: Annotated[Literal["sse", "json"], Query(alias="format")] = "sse",
    limit: Annotated[int, Query(ge=1, le=100_000, description="format=json only")] = 10_000,
    last_event_id: Annotated[str | None, Header(description="resume after this id")] = None,
) -> Response:
    """Stream events after ``Last-Event-ID`` (or ``after``); ends after a terminal state."""
    start = _resume_point(after, last_event_id)
    await in_thread(check_visible, ctx, task_id, viewer)
    if format_ == "json":
        _, events = await in_thread(task_events, ctx, task_id, start, limit)
        return JSONResponse([e.model_dump(mode="json") for e in events])
    token = ctx.events.token()
    state, batch = await in_thread(task_events, ctx, task_id, start, _BATCH)
    return EventSourceResponse(
        _stream(ctx, task_id, start, token, state, batch), ping=ctx.settings.sse_ping_seconds
    )
