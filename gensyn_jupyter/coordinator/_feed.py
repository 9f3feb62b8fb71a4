"""What ``GET /v1/events`` reads: events of the tasks a caller may see, and a provider digest.

A caller sees the events of its own tasks (those of the account it signed in
as) and of tasks that belong to no account (a free network's); an anonymous
caller only the latter. Providers are public (``GET /v1/providers``), so
their digest is the same for everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from ..protocol import Event
from ._context import Context
from ._db import EventRow, TaskRow
from ._events import event_from_row
from ._providers import list_providers

__all__ = ["head_event_id", "provider_digest", "visible_events"]


def head_event_id(ctx: Context) -> int:
    """The id of the newest event of any task (0 when there is none)."""
    with ctx.db.read() as session:
        return int(session.scalar(select(func.max(EventRow.id))) or 0)


def _visible(account: str | None) -> ColumnElement[bool]:
    if account is None:
        return TaskRow.account.is_(None)
    return or_(TaskRow.account.is_(None), func.lower(TaskRow.account) == account.lower())


def visible_events(
    ctx: Context, account: str | None, cursor: int, kinds: Sequence[str], limit: int
) -> tuple[int, list[Event]]:
    """Up to ``limit`` events after ``cursor`` that ``account`` may see, of ``kinds``.

    Returns
    -------
    tuple of int and list of Event
        The new cursor and the events, oldest first. The cursor moves past
        events the caller may not see too, so they are never read twice; it
        is the newest id read (or the last event's, when ``limit`` cut the
        list short). Writers commit in id order (see ``_db``), so nothing at
        or below the head read here can appear later.
    """
    with ctx.db.read() as session:
        head = int(session.scalar(select(func.max(EventRow.id))) or 0)
        if head <= cursor:
            return cursor, []
        rows = list(
            session.scalars(
                select(EventRow)
                .join(TaskRow, TaskRow.id == EventRow.task_id)
                .where(
                    EventRow.id > cursor,
                    EventRow.id <= head,
                    EventRow.kind.in_(list(kinds)),
                    _visible(account),
                )
                .order_by(EventRow.id)
                .limit(limit)
            )
        )
        new_cursor = rows[-1].id if len(rows) >= limit else head
        return new_cursor, [event_from_row(r) for r in rows]


def provider_digest(ctx: Context) -> list[dict[str, Any]]:
    """Each provider's id, state and tasks done, newest first: what a panel's list shows."""
    return [{"id": p.id, "state": p.state, "tasks_done": p.tasks_done} for p in list_providers(ctx)]
