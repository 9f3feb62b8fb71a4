"""Resumable runs: checkpoints posted during a run; a lost provider's task resumes elsewhere.

While a cell runs, its provider posts each resumable checkpoint it uploaded
(``POST /v1/leases/{id}/checkpoint``); the task keeps the latest. When the
provider goes silent past the lease ttl, a task with such a checkpoint goes
back to the queue (attempt + 1) instead of failing, and the next provider's
lease carries the checkpoint as its resume point.

A paid run's checkpoint carries the provider's signed claim for the work up
to it (:class:`~gensyn_jupyter.protocol.ProgressClaim`), checked here; when the
task resumes, the lease hands it over on chain with ``TaskMarket.reassign``,
which pays the lost provider that claim at settlement (docs/faults.md).
"""

from __future__ import annotations

import math
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..chain import progress_hash, recover_progress_signer
from ..protocol import CheckpointPost, Payment, TaskState, Verification
from ._context import Context
from ._db import LeaseRow, ProviderRow, TaskRow
from ._errors import ApiError
from ._providers import authenticate, touch
from ._tasks import set_state, task_row

__all__ = ["MAX_HANDOVERS", "lost_run", "post_checkpoint", "resume_point"]

MAX_HANDOVERS = 4  # TaskMarket._MAX_HANDOVERS: reassign refuses a fifth
_CLAIM_SLACK_S = 5.0  # clock and upload delays a claim may run ahead of the lease by


def post_checkpoint(ctx: Context, lease_id: str, token: str, post: CheckpointPost) -> None:
    """Keep ``post`` as the task's resume point (only the lease's provider, while it runs).

    Raises
    ------
    ApiError
        400 when a named blob was not uploaded; 401/403/404 for the wrong
        provider or an unknown lease; 409 when the lease is no longer held or
        the task is not running; 400 for a paid run's checkpoint without a
        valid signed claim (:func:`_check_claim`).
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
            _check_claim(ctx, task.started_at or now, task.gpus or 1, provider.address, post, now,
                         Payment.model_validate_json(task.payment))  # fmt: skip
        if task.checkpoint is not None:
            kept = CheckpointPost.model_validate_json(task.checkpoint)
            if kept.step > post.step and kept.leaves[0] == post.leaves[0]:
                return  # a late post of an older checkpoint: keep the newer one
        task.checkpoint = post.model_dump_json()
        lease.expires_at = now + ctx.settings.lease_ttl_seconds


def _check_claim(
    ctx: Context,
    started_at: float,
    gpus: int,
    address: str | None,
    post: CheckpointPost,
    now: float,
    payment: Payment,
) -> None:
    """400 unless a paid run's checkpoint carries a claim its provider signed, within bounds.

    The claim may not exceed what is left of the price, nor the GPU-seconds of
    this lease so far at the order's rate: the operator relays it on chain
    only if the provider is lost, and it is all that provider is then paid.
    """
    claim = post.claim
    if claim is None:
        raise ApiError(
            400,
            "a paid run's checkpoint must carry the provider's signed claim for the work up "
            "to it ('claim': amount_wei and signature); update the provider",
            "claim",
        )
    if ctx.chain is None or address is None:
        raise ApiError(409, "this coordinator has no chain to check a paid checkpoint against")
    leaf = bytes.fromhex(post.leaves[-1].leaf[2:])
    digest = progress_hash(
        chain_id=ctx.chain.chain_id,
        market=ctx.chain.market.address,
        task_key=bytes.fromhex(payment.task_key[2:]),
        step=post.step,
        leaf=leaf,
        amount_wei=claim.amount_wei,
    )
    signer = recover_progress_signer(digest, claim.signature)
    if signer is None or signer.lower() != address.lower():
        raise ApiError(
            400,
            f"the claim of checkpoint step {post.step} is signed by {signer or 'nobody'}, not "
            f"by this provider's address {address}: sign the progress hash of (task key, "
            "step, leaf, amount) with the staked key",
            "claim.signature",
        )
    left = payment.price_wei if payment.price_wei is not None else payment.order.max_price_wei
    worked = max(0.0, now - started_at + _CLAIM_SLACK_S)
    earned = math.ceil(worked * gpus * payment.rate_wei_per_gpu_second)
    if claim.amount_wei > min(left, earned):
        raise ApiError(
            400,
            f"the claim of checkpoint step {post.step} asks {claim.amount_wei} wei, but "
            f"{worked:.1f} s on {gpus} GPU(s) at {payment.rate_wei_per_gpu_second} wei/GPU-s "
            f"earn at most {earned} wei and {left} wei of the price is left",
            "claim.amount_wei",
        )


def lost_run(session: Session, task: TaskRow, provider: str, why: str, now: float) -> bool:
    """Queue a running task whose provider was lost, to resume from its latest checkpoint.

    Returns False (nothing changed) when the task cannot resume: no checkpoint
    was posted, it is replicated, it runs several ranks (``--gpus N``), or it is
    paid and was already handed over ``MAX_HANDOVERS`` times.
    """
    if task.checkpoint is None or (task.gpus or 1) > 1:
        return False
    if task.payment is not None and (
        len(Payment.model_validate_json(task.payment).handovers) >= MAX_HANDOVERS
    ):
        return False
    verification = task.verification
    if verification and Verification.model_validate_json(verification).mode == "replicate":
        return False  # two runs are compared, not resumed
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
