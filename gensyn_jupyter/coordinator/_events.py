"""Task events: appending, reading after an id, and waking whoever waits for them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocol import Event, EventKind
from ._db import EventRow

__all__ = ["Notifier", "append_event", "event_from_row", "events_after", "finite_json"]


def finite_json(value: Any) -> Any:
    """``value`` with non-finite floats spelled ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

    Plain JSON has no NaN; a loss that went NaN must still reach every client
    (pydantic reads these strings back as floats).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def append_event(
    session: Session, task_id: str, kind: EventKind, data: dict[str, Any], ts: float | None = None
) -> EventRow:
    """Add one event to ``task_id``'s history inside the caller's transaction.

    Parameters
    ----------
    session
        A session from ``Database.write()``; the event commits with it.
    task_id
        The task the event belongs to.
    kind
        ``state``, ``stdout``, ``stderr``, ``metrics`` or ``log``.
    data
        The event's JSON payload (non-finite floats are stored as strings).
    ts
        Unix time of the event (now when omitted).

    Returns
    -------
    EventRow
        The new row (its id is assigned once flushed).
    """
    row = EventRow(
        task_id=task_id,
        kind=kind,
        data=json.dumps(finite_json(data), separators=(",", ":"), allow_nan=False),
        ts=time.time() if ts is None else ts,
    )
    session.add(row)
    session.flush()
    return row


def event_from_row(row: EventRow) -> Event:
    """The protocol ``Event`` of a stored row."""
    return Event.model_validate(
        {
            "id": row.id,
            "task_id": row.task_id,
            "kind": row.kind,
            "data": json.loads(row.data),
            "ts": row.ts,
        }
    )


def events_after(session: Session, task_id: str, after: int, limit: int) -> list[Event]:
    """Up to ``limit`` events of ``task_id`` with ``id > after``, oldest first."""
    rows = session.scalars(
        select(EventRow)
        .where(EventRow.task_id == task_id, EventRow.id > after)
        .order_by(EventRow.id)
        .limit(limit)
    )
    return [event_from_row(r) for r in rows]


class Notifier:
    """Wakes every coroutine waiting for "something changed", at once.

    Use from the event loop only: take a ``token()`` *before* checking the
    database, then ``wait(token, timeout)``; a ``notify()`` between the check
    and the wait is not lost.  The timeout bounds the wait, so a missed wake
    (another process wrote) costs at most one fallback period.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def token(self) -> asyncio.Event:
        """The event the next ``notify()`` sets."""
        return self._event

    def notify(self) -> None:
        """Wake everyone waiting on a token taken before this call."""
        current, self._event = self._event, asyncio.Event()
        current.set()

    @staticmethod
    async def wait(token: asyncio.Event, timeout: float) -> bool:
        """Wait until ``token`` is set or ``timeout`` seconds pass; True when woken."""
        if timeout <= 0:
            return token.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), timeout)
        return token.is_set()
