"""Resumable runs: checkpoints posted during a run; a lost provider's task resumes elsewhere.

While a cell runs, its provider posts each resumable checkpoint it uploaded
(``POST /v1/leases/{id}/checkpoint``); the task keeps the latest. When the
provider goes silent past the lease ttl, a task with such a checkpoint goes
back to the queue (attempt + 1) instead of failing, and the next provider's
lease carries the checkpoint as its resume point. Paid tasks are not resumed
(their escrow is assigned to the lost provider on chain): they fail as before,
saying so; see docs/faults.md.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocol import CheckpointPost, TaskState, Verification
from ._context import Context
from ._db import LeaseRow, ProviderRow, TaskRow
from ._errors import ApiError
from ._providers import authenticate, touch
from ._tasks import set_state, task_row

__all__ = ["lost_run", "post_checkpoint", "resume_point"]


def post_checkpoint(ctx: Context, lease_id: str, token: str, post: CheckpointPost) -> None:
    """Keep ``post`` as the task's resume point (only the lease's provider, while it runs).

    Raises
    ------
    ApiError
        400 when a named blob was not uploaded; 401/403/404 for the wrong
        provider or an unknown lease; 409 when the lease is no longer held, the
        task is not running, or it is paid (paid runs are not resumed).
    """
    for blob in post.blobs:
        for part, sha in (("meta", blob.meta), ("tensors", blob.tensors)):
            if not ctx.blobs.exists(sha):
                raise ApiError(
                    400,
                    f"checkpoint of leaf {blob.leaf} names blob {sha} ({part}) which was not "
                    f"uploaded; PUT /v1/blobs/{sha} first",
                    f"blobs.{blob.leaf}.{part}",
                )
    now = time.time()
    with ctx.db.write() as session:
        provider = authenticate(session, token)
        lease = session.get(LeaseRow, lease_id)
        if lease is None:
            raise ApiError(404, f"lease {lease_id} not found", "lease_id")
        if lease.provider_id != provider.id:
            raise ApiError(403, f"lease {lease_id} belongs to another provider")
        touch(provider, now)
        if lease.released_at is not None:
            raise ApiError(409, f"lease {lease_id} is no longer held: {lease.release_reason}")
        task = task_row(session, lease.task_id)
        if task.state != TaskState.RUNNING.value or task.provider_id != provider.id:
            raise ApiError(409, f"task {task.id} is not running on this lease ({task.state})")
        if task.payment is not None:
            raise ApiError(
                409,
                f"task {task.id} is paid: its escrow is assigned to this provider, so a lost "
                "run is not resumed elsewhere and its checkpoints are not kept",
            )
        if task.checkpoint is not None:
            kept = CheckpointPost.model_validate_json(task.checkpoint)
            if kept.step > post.step and kept.leaves[0] == post.leaves[0]:
                return  # a late post of an older checkpoint: keep the newer one
        task.checkpoint = post.model_dump_json()
        lease.expires_at = now + ctx.settings.lease_ttl_seconds


def lost_run(session: Session, task: TaskRow, provider: str, why: str, now: float) -> bool:
    """Queue a running task whose provider was lost, to resume from its latest checkpoint.

    Returns False (nothing changed) when the task cannot resume: no checkpoint
    was posted, it is paid, it is replicated, or it runs several ranks (``--gpus N``).
    """
    if task.checkpoint is None or task.payment is not None or (task.gpus or 1) > 1:
        return False
    verification = task.verification
    if verification and Verification.model_validate_json(verification).mode == "replicate":
        return False
    point = CheckpointPost.model_validate_json(task.checkpoint)
    task.attempt = (task.attempt or 1) + 1
    set_state(
        session,
        task,
        TaskState.QUEUED,
        f"provider {provider} lost ({why}); resuming from step "
        f"{point.step} on the next free provider",
        now,
        resume_step=point.step,
        lost_provider=provider,
    )
    return True


def resume_point(session: Session, task: TaskRow) -> tuple[CheckpointPost, str] | None:
    """A resumed task's checkpoint and the name of the provider lost (None for a first run)."""
    if (task.attempt or 1) < 2 or task.checkpoint is None:
        return None
    last = session.execute(
        select(ProviderRow.name)
        .join(LeaseRow, LeaseRow.provider_id == ProviderRow.id)
        .where(LeaseRow.task_id == task.id, LeaseRow.released_at.is_not(None))
        .order_by(LeaseRow.created_at.desc())
        .limit(1)
    ).scalar()
    return CheckpointPost.model_validate_json(task.checkpoint), str(last or "?")
