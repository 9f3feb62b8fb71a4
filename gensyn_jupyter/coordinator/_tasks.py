"""Task transactions: create, read, list, cancel, and the state events they emit.

Every function here is blocking (one short transaction); routes call them
through ``in_thread``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from ..protocol import (
    Bundle,
    Event,
    Payment,
    ResultManifest,
    Task,
    TaskSpec,
    TaskState,
    Verification,
    VerifyMode,
)
from ._blob_index import Caller, index_blobs, readable_among
from ._context import Context
from ._db import TaskRow
from ._errors import ApiError, validation_problem
from ._events import append_event, events_after
from ._ids import new_id

__all__ = [
    "cancel_task",
    "check_visible",
    "count_tasks",
    "create_task",
    "end_run",
    "get_task",
    "list_tasks",
    "not_yours",
    "owned_row",
    "set_state",
    "task_events",
    "task_from_row",
    "task_row",
]


def task_from_row(row: TaskRow) -> Task:
    """The protocol ``Task`` of a stored row."""
    return Task(
        id=row.id,
        spec=TaskSpec.model_validate_json(row.spec),
        state=TaskState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        provider_id=row.provider_id,
        provider_name=row.provider_name,
        error=row.error,
        result=ResultManifest.model_validate_json(row.result) if row.result else None,
        started_at=row.started_at,
        finished_at=row.finished_at,
        gpu_seconds=row.gpu_seconds,
        account=row.account,
        payment=Payment.model_validate_json(row.payment) if row.payment else None,
        verification=(
            Verification.model_validate_json(row.verification) if row.verification else None
        ),
        attempt=row.attempt or 1,
        checkpoint_step=_checkpoint_step(row.checkpoint),
    )


def _checkpoint_step(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    return int(json.loads(checkpoint)["step"])  # a CheckpointPost, stored by ._resume


def task_row(session: Session, task_id: str) -> TaskRow:
    """The row of ``task_id``; 404 when there is none."""
    row = session.scalar(select(TaskRow).where(TaskRow.id == task_id))
    if row is None:
        raise ApiError(404, f"task {task_id} not found", "task_id")
    return row


def set_state(
    session: Session, row: TaskRow, state: TaskState, message: str, now: float, **extra: Any
) -> None:
    """Move ``row`` to ``state`` and record a ``state`` event saying why."""
    row.state = state.value
    row.updated_at = now
    append_event(session, row.id, "state", {"state": state.value, "message": message, **extra}, now)


def end_run(
    session: Session, task: TaskRow, state: TaskState, message: str, now: float, **extra: Any
) -> None:
    """End a task's run in ``state``: stamp ``finished_at`` and its GPU-seconds."""
    task.finished_at = now
    if task.started_at is not None:
        task.gpu_seconds = max(0.0, now - task.started_at) * task.gpus
    set_state(session, task, state, message, now, **extra)


def _usable(ctx: Context, shas: list[str], caller: Caller) -> set[str]:
    with ctx.db.read() as session:
        return readable_among(session, shas, caller)


def _check_bundle(ctx: Context, spec: TaskSpec, caller: Caller) -> tuple[int, set[str]]:
    """Check the bundle and its blobs: the bytes of the bundle plus its distinct input
    blobs, and those inputs. Every blob must be stored and readable by the submitter
    (a task cannot be used to read someone else's blob by naming its hash)."""
    sha = spec.bundle
    size = ctx.blobs.size(sha)
    if size is None or sha not in _usable(ctx, [sha], caller):
        # the same 400 for a blob stored but not the submitter's: a hash reveals nothing
        raise ApiError(
            400, f"bundle blob {sha} was not uploaded; PUT /v1/blobs/{sha} first", "bundle"
        )
    limit = ctx.settings.max_json_bytes
    if size > limit:
        raise ApiError(
            400,
            f"bundle blob {sha} is {size} bytes; a bundle is JSON of at most {limit} bytes "
            "(tensors and pickled objects belong in input blobs)",
            "bundle",
        )
    try:
        bundle = Bundle.model_validate_json(ctx.blobs.read_bytes(sha))
    except ValidationError as exc:
        problem, _ = validation_problem(exc)
        raise ApiError(400, f"bundle is not valid: {problem}", "bundle") from None
    if spec.verify is not VerifyMode.NONE and bundle.checkpoint_every == 0:
        raise ApiError(
            400,
            f"verify '{spec.verify.value}' compares committed checkpoints, but the bundle turns "
            "them off (--checkpoint-every 0); drop that option or submit with verify 'none'",
            "verify",
        )
    usable = _usable(ctx, [r.blob for r in bundle.inputs if r.blob is not None], caller)
    inputs: dict[str, int] = {}
    for ref in bundle.inputs:
        if ref.blob is None:
            continue
        blob_size = ctx.blobs.size(ref.blob)
        if blob_size is None or ref.blob not in usable:
            raise ApiError(
                400,
                f"input '{ref.name}' refers to blob {ref.blob} which was not uploaded; "
                f"PUT /v1/blobs/{ref.blob} first (a task names only blobs its submitter "
                "uploaded or may read)",
                "bundle",
            )
        inputs[ref.blob] = blob_size
    return size + sum(inputs.values()), set(inputs)


def create_task(ctx: Context, spec: TaskSpec, account: str | None = None) -> Task:
    """Check the bundle and its blobs, then queue the task.

    On a network with a chain the task waits in ``awaiting_approval`` for
    its owner's signed and funded order instead (see ``_payments``).
    """
    if ctx.chain is not None and account is None:
        raise ApiError(
            401,
            "sign in first: this network takes payment, so every task belongs to an account. "
            "Open the Gensyn panel to connect a wallet, or run `gensyn signer` with your key",
        )
    # The approval shows the size to the payer: store what was measured, not what was claimed.
    measured, inputs = _check_bundle(ctx, spec, Caller(account=account))
    spec = spec.model_copy(update={"bundle_bytes": measured})
    now = time.time()
    with ctx.db.write() as session:
        task_id = new_id("t")
        while session.scalar(select(TaskRow.id).where(TaskRow.id == task_id)) is not None:
            task_id = new_id("t")  # pragma: no cover - 40 random bits
        row = TaskRow(
            id=task_id,
            state=TaskState.QUEUED.value,
            device=spec.device,
            gpus=spec.gpus,
            spec=spec.model_dump_json(),
            created_at=now,
            updated_at=now,
            gpu_seconds=0.0,
            account=account,
            verification=(
                Verification(
                    mode="spot" if spec.verify is VerifyMode.SPOT else "replicate"
                ).model_dump_json()
                if spec.verify is not VerifyMode.NONE
                else None
            ),
        )
        session.add(row)
        session.flush()
        index_blobs(session, task_id, [spec.bundle], "bundle")
        index_blobs(session, task_id, inputs - {spec.bundle}, "input")
        if ctx.chain is None or account is None:
            set_state(session, row, TaskState.QUEUED, "queued; waiting for a provider", now)
            return task_from_row(row)
        from ._payments import awaiting_message, draft_payment, save_payment

        payment = draft_payment(ctx.chain, session, task_id, account, spec, now)
        row.chain_key = payment.task_key
        save_payment(row, payment)
        set_state(session, row, TaskState.AWAITING_APPROVAL, awaiting_message(payment), now)
        return task_from_row(row)


def get_task(ctx: Context, task_id: str, viewer: str | None = None) -> Task:
    """The task ``task_id`` as ``viewer`` (a signed-in account, or None) may read it.

    A task with an owner is read by that account only; for anyone else it is
    404, exactly as an unknown task. A task without an owner (a free network)
    is read by anyone.
    """
    with ctx.db.read() as session:
        return task_from_row(owned_row(session, task_id, viewer))


def check_visible(ctx: Context, task_id: str, viewer: str | None) -> None:
    """404 unless ``viewer`` may read ``task_id`` (its owner; anyone for an unowned task)."""
    with ctx.db.read() as session:
        owned_row(session, task_id, viewer)


def list_tasks(
    ctx: Context,
    state: TaskState | None,
    limit: int,
    account: str | None = None,
    viewer: str | None = None,
) -> list[Task]:
    """Tasks, newest first, optionally only those in ``state`` or of ``account``.

    Only the tasks ``viewer`` may read: those without an owner and its own.
    """
    query = select(TaskRow).order_by(TaskRow.seq.desc()).limit(limit)
    mine = func.lower(TaskRow.account) == viewer.lower() if viewer is not None else false()
    query = query.where(or_(TaskRow.account.is_(None), mine))
    if state is not None:
        query = query.where(TaskRow.state == state.value)
    if account is not None:
        query = query.where(func.lower(TaskRow.account) == account.lower())
    with ctx.db.read() as session:
        return [task_from_row(r) for r in session.scalars(query)]


def count_tasks(ctx: Context) -> int:
    """How many tasks the coordinator knows."""
    with ctx.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(TaskRow)) or 0)


def not_yours(task_id: str, account: str | None) -> ApiError:
    """The 404 for a task that is unknown or belongs to another account (the same answer)."""
    if account is None:
        return ApiError(
            404,
            f"task {task_id} not found; a paid task is visible only to its owner: sign in "
            "with the wallet that submitted it",
            "task_id",
        )
    return ApiError(404, f"task {task_id} not found among the tasks of {account}", "task_id")


def owned_row(session: Session, task_id: str, account: str | None) -> TaskRow:
    """The row of ``task_id`` when ``account`` may act on it (its owner, or anyone for a
    task without an owner); :func:`not_yours` otherwise."""
    row = session.scalar(select(TaskRow).where(TaskRow.id == task_id))
    if row is None:
        if account is None and not _any_owned(session):
            raise ApiError(404, f"task {task_id} not found", "task_id")
        raise not_yours(task_id, account)
    if row.account is not None and (account is None or account.lower() != row.account.lower()):
        raise not_yours(task_id, account)
    return row


def _any_owned(session: Session) -> bool:
    owned = select(TaskRow.id).where(TaskRow.account.is_not(None)).limit(1)
    return session.scalar(owned) is not None


def cancel_task(ctx: Context, task_id: str, account: str | None = None) -> Task:
    """Cancel a task that has not ended; 409 when it ended otherwise.

    A task with an owner is cancelled only by that account (signed in);
    another caller gets the 404 of an unknown task. A running task's lease
    stays held: its provider learns of the cancel from its next heartbeat or
    event post and stops the worker.
    """
    now = time.time()
    with ctx.db.write() as session:
        row = owned_row(session, task_id, account)
        state = TaskState(row.state)
        if state is TaskState.CANCELLED:
            return task_from_row(row)
        if state.terminal:
            raise ApiError(
                409, f"task {task_id} already ended ({state.value}); it cannot be cancelled"
            )
        end_run(session, row, TaskState.CANCELLED, "cancelled by the owner", now)
        return task_from_row(row)


def task_events(
    ctx: Context, task_id: str, after: int, limit: int
) -> tuple[TaskState, list[Event]]:
    """The task's state, then up to ``limit`` of its events after id ``after``.

    The state is read first: when it is terminal, the event that made it so
    is already stored, so an empty list after a terminal state means the
    reader has seen everything.
    """
    with ctx.db.read() as session:
        state = TaskState(task_row(session, task_id).state)
        return state, events_after(session, task_id, after, limit)
