"""What a provider posts about its lease: events while it runs, then the result."""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from ..protocol import (
    EventIn,
    EventKind,
    EventsPost,
    EventsPostReply,
    MetricPoint,
    Payment,
    ResultManifest,
    Task,
    TaskState,
    TxRef,
)
from ._context import Context
from ._db import LeaseRow, ProviderRow, TaskRow
from ._errors import ApiError, validation_problem
from ._events import append_event
from ._payments import add_tx
from ._providers import authenticate, touch
from ._replication import begin_verification
from ._tasks import end_run, set_state, task_from_row, task_row

__all__ = ["post_events", "post_result"]

_POINTS = TypeAdapter(list[MetricPoint])
_TEXT_FIELD: dict[str, str] = {"stdout": "text", "stderr": "text", "log": "message"}


def _lease_of(session: Session, lease_id: str, token: str) -> tuple[LeaseRow, ProviderRow, TaskRow]:
    provider = authenticate(session, token)
    lease = session.get(LeaseRow, lease_id)
    if lease is None:
        raise ApiError(404, f"lease {lease_id} not found", "lease_id")
    if lease.provider_id != provider.id:
        raise ApiError(403, f"lease {lease_id} belongs to another provider")
    return lease, provider, task_row(session, lease.task_id)


def _not_held(lease: LeaseRow) -> ApiError:
    return ApiError(409, f"lease {lease.id} is no longer held: {lease.release_reason}")


def _checked(index: int, event: EventIn) -> tuple[EventKind, dict[str, Any]]:
    where = f"events.{index}"
    if event.kind == "state":
        raise ApiError(
            422,
            f"field '{where}.kind': 'state' events come from the coordinator only; "
            "a provider posts stdout, stderr, metrics or log",
            f"{where}.kind",
        )
    data = dict(event.data)
    if event.kind == "metrics":
        try:
            points = _POINTS.validate_python(data.get("points"))
        except ValidationError as exc:
            detail, field = validation_problem(exc, f"{where}.data.points")
            raise ApiError(422, f"metrics event: {detail}", field) from None
        data["points"] = [p.model_dump(exclude_none=True) for p in points]
        return event.kind, data
    key = _TEXT_FIELD[event.kind]
    if not isinstance(data.get(key), str):
        raise ApiError(
            422,
            f"field '{where}.data.{key}': {event.kind} events carry {{'{key}': str}}",
            f"{where}.data.{key}",
        )
    return event.kind, data


def _held_lease(
    session: Session, lease_id: str, token: str, now: float
) -> tuple[LeaseRow, ProviderRow, TaskRow]:
    """The lease, its provider (now seen) and its task; 409 when the lease was released."""
    lease, provider, task = _lease_of(session, lease_id, token)
    touch(provider, now)
    if lease.released_at is not None:
        raise _not_held(lease)
    return lease, provider, task


def post_events(ctx: Context, lease_id: str, token: str, body: EventsPost) -> EventsPostReply:
    """Record a provider's events for its lease and renew the lease.

    ``cancelled=True`` (nothing recorded) tells the provider to stop the worker.
    """
    events = [_checked(i, e) for i, e in enumerate(body.events)]
    points = sum(len(data["points"]) for kind, data in events if kind == "metrics")
    if points > ctx.settings.max_metric_points:
        raise ApiError(
            413,
            f"{points} metric points in one post; this coordinator takes at most "
            f"{ctx.settings.max_metric_points}: split them into several posts",
            "events",
        )
    now = time.time()
    with ctx.db.write() as session:
        lease, _provider, task = _held_lease(session, lease_id, token, now)
        if task.state == TaskState.CANCELLED.value:
            return EventsPostReply(accepted=0, cancelled=True)
        if task.state != TaskState.RUNNING.value:  # pragma: no cover - ends release the lease
            raise ApiError(409, f"task {task.id} already ended ({task.state})")
        lease.expires_at = now + ctx.settings.lease_ttl_seconds
        if body.seq is not None and lease.events_seq is not None and body.seq <= lease.events_seq:
            return EventsPostReply(accepted=0, cancelled=False)  # a retry of a recorded post
        for kind, data in events:
            append_event(session, task.id, kind, data, now)
        if body.seq is not None:
            lease.events_seq = body.seq
        return EventsPostReply(accepted=len(events), cancelled=False)


def _commit_paid(
    ctx: Context, session: Session, task: TaskRow, name: str, manifest: ResultManifest, now: float
) -> None:
    """A paid task's result: committed now, settled when the chain says so."""
    payment = Payment.model_validate_json(task.payment or "")
    if manifest.commit_tx is not None:
        payment = add_tx(payment, TxRef(kind="commit", hash=manifest.commit_tx))
        task.payment = payment.model_dump_json()
    end_run(
        session,
        task,
        TaskState.COMMITTED,
        f"result committed by {name} on chain; paid once the challenge window closes",
        now,
    )
    if task.verification is not None:
        begin_verification(ctx, session, task, manifest, now)
        return
    set_state(
        session,
        task,
        TaskState.VERIFIED,
        "verification: none (result trusted, not checked); waiting for settlement",
        now,
    )
    if payment.outcome == "finalized":  # the keeper settled it before this post arrived
        from ._watcher import mark_settled

        mark_settled(session, task, payment, now)


def post_result(ctx: Context, lease_id: str, token: str, manifest: ResultManifest) -> Task:
    """Finish a lease's task with the provider's result (or the cell's error)."""
    if not math.isfinite(manifest.duration_s):
        raise ApiError(422, "field 'duration_s': must be a finite number", "duration_s")
    shas = [("values", manifest.values), ("tensors", manifest.tensors)]
    for c in manifest.checkpoints:
        shas += [
            (f"checkpoints.{c.leaf}.meta", c.meta),
            (f"checkpoints.{c.leaf}.tensors", c.tensors),
        ]
    for field, sha in shas:
        if sha is not None and not ctx.blobs.exists(sha):
            raise ApiError(
                400,
                f"result names blob {sha} ({field}) which was not uploaded; "
                f"PUT /v1/blobs/{sha} first",
                field,
            )
    now = time.time()
    with ctx.db.write() as session:
        lease, provider, task = _held_lease(session, lease_id, token, now)
        if task.payment is not None and manifest.commit_tx is None and manifest.error is None:
            raise ApiError(
                400,
                f"task {task.id} is paid: commit the result on chain (TaskMarket.commit) "
                "and send the transaction hash as 'commit_tx'",
                "commit_tx",
            )
        cancelled = task.state == TaskState.CANCELLED.value
        lease.released_at = now
        lease.release_reason = "the task was cancelled" if cancelled else "its result was posted"
        if not cancelled:
            if task.state != TaskState.RUNNING.value:  # pragma: no cover - ends release the lease
                raise ApiError(409, f"task {task.id} already ended ({task.state})")
            provider.tasks_done += 1
            task.result = manifest.model_dump_json()
            name = provider.name
            if manifest.error is not None:
                err = manifest.error
                task.error = f"{err.type}: {err.message}"
                end_run(
                    session,
                    task,
                    TaskState.FAILED,
                    f"the cell raised {task.error} on provider {name}",
                    now,
                    error=err.model_dump(mode="json"),
                )
            elif task.payment is not None:
                _commit_paid(ctx, session, task, name, manifest, now)
            elif task.verification is not None:
                end_run(session, task, TaskState.COMMITTED, f"result committed by {name}", now)
                begin_verification(ctx, session, task, manifest, now)
            else:
                end_run(session, task, TaskState.COMMITTED, f"result committed by {name}", now)
                set_state(
                    session,
                    task,
                    TaskState.VERIFIED,
                    "verification: none (result trusted, not checked)",
                    now,
                )
                set_state(
                    session,
                    task,
                    TaskState.SETTLED,
                    "settled: nothing to pay on a network without escrow",
                    now,
                )
            return task_from_row(task)
    raise ApiError(409, f"task was cancelled by its owner; lease {lease_id}'s result is discarded")
