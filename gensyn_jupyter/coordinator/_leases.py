"""Lease transactions: release on a new poll, claim a queued task, expire silence."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update

from ..chain import MarketError, TaskStatus
from ..protocol import (
    CheckpointPost,
    Handover,
    Lease,
    Payment,
    ProviderInfo,
    TaskState,
    Verification,
)
from ._chain import ChainLink
from ._context import Context
from ._db import LeaseRow, ProviderRow, TaskRow
from ._ids import new_id
from ._payments import add_tx, handed_over
from ._providers import authenticate, describe_device, touch
from ._replication import open_replica
from ._resume import MAX_HANDOVERS, lost_run, resume_point
from ._tasks import end_run, set_state, task_from_row, task_row
from ._verification import choose_verifier, claim_job

__all__ = ["Poller", "claim", "expire_leases", "grant_grace", "start_polling"]

_log = logging.getLogger("gensyn_jupyter.coordinator")


@dataclass(frozen=True)
class Poller:
    """A provider waiting for a lease."""

    id: str
    name: str
    info: ProviderInfo


def _ttl_words(ctx: Context) -> str:
    return f"{ctx.settings.lease_ttl_seconds:g}"


def start_polling(ctx: Context, provider_id: str, token: str) -> Poller:
    """Authenticate a lease request and release the provider's previous lease.

    A provider holds one lease at a time; asking for another means it gave up
    the old one, so a task still running on it fails with a message saying so.
    """
    now = time.time()
    with ctx.db.write() as session:
        provider = authenticate(session, token, provider_id)
        touch(provider, now)
        held = session.scalars(
            select(LeaseRow).where(
                LeaseRow.provider_id == provider.id, LeaseRow.released_at.is_(None)
            )
        )
        for lease in held:
            lease.released_at = now
            lease.release_reason = "the provider asked for a new lease"
            task = task_row(session, lease.task_id)
            if task.state == TaskState.RUNNING.value and lost_run(
                session, task, provider.name, "it asked for a new task: it restarted", now
            ):
                continue
            if task.state == TaskState.RUNNING.value:
                message = (
                    f"provider {provider.name} asked for a new task while this one was still "
                    "running (it probably restarted); the task failed"
                )
                task.error = message
                end_run(session, task, TaskState.FAILED, message, now)
        return Poller(provider.id, provider.name, ProviderInfo.model_validate_json(provider.info))


def _can_take_paid(ctx: Context, address: str | None) -> bool:
    if ctx.chain is None or address is None:
        return False
    try:
        return ctx.chain.bonded_stake(address) >= ctx.chain.min_stake
    except Exception:  # an unreachable node: take no paid task this round
        _log.exception("could not read the stake of %s", address)
        return False


def claim(ctx: Context, poller: Poller) -> Lease | None:
    """Give this provider a verification job, else the oldest queued task it can run, or None.

    Runs in one transaction under the writer lock, and the ``queued -> running``
    update is conditional, so two providers never get the same task. A paid
    task goes only to a provider with enough stake, and is assigned to it on
    chain in the same transaction (a refused assignment leaves it queued). A
    referee takes referee jobs only.
    """
    job = claim_job(ctx, poller.id)
    if job is not None or poller.info.role == "referee":
        return job
    try:
        return _claim(ctx, poller)
    except _AssignRefused as exc:
        _log.warning("%s; %s passes it over for %g s", exc, poller.name, _SKIP_SECONDS)
        ctx.skipped[(exc.task_id, poller.id)] = time.time() + _SKIP_SECONDS
        return None


_SKIP_SECONDS = 30.0


class _AssignRefused(Exception):
    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


def _claim(ctx: Context, poller: Poller) -> Lease | None:
    now = time.time()
    info = poller.info
    ttl = ctx.settings.lease_ttl_seconds
    with ctx.db.write() as session:
        provider = session.get(ProviderRow, poller.id)
        if provider is None:  # pragma: no cover - providers are never deleted
            return None
        touch(provider, now)
        # --gpus N: N devices free on this provider (it runs one task at a time)
        query = select(TaskRow).where(
            TaskRow.state == TaskState.QUEUED.value,
            or_(
                and_(TaskRow.device == "cpu", TaskRow.gpus <= info.slots("cpu")),
                and_(TaskRow.device != "cpu", TaskRow.gpus <= info.slots("auto")),
            ),
        )
        if info.device_type != "cuda":
            query = query.where(TaskRow.device != "cuda")
        if not _can_take_paid(ctx, provider.address):
            query = query.where(TaskRow.payment.is_(None))
        ctx.skipped = {pair: t for pair, t in list(ctx.skipped.items()) if t > now}
        skipped = [task for task, who in ctx.skipped if who == poller.id]
        if skipped:
            query = query.where(TaskRow.id.not_in(skipped))
        query = query.order_by(TaskRow.seq).limit(1)
        if ctx.db.shared:  # replicas on PostgreSQL: a row another one is claiming is skipped
            query = query.with_for_update(skip_locked=True, of=TaskRow)
        task = session.scalar(query)
        if task is None:
            return None
        verification = (
            Verification.model_validate_json(task.verification) if task.verification else None
        )
        replica = None
        if verification is not None and verification.mode == "replicate":
            replica = choose_verifier(
                session,
                poller.id,
                provider.address,
                now,
                seen_since=now - ctx.settings.offline_after_seconds,
                need_address=task.payment is not None,
            )
            if replica is None:
                return None  # a replicated task waits until a second provider is online
        won = cast(
            CursorResult[Any],
            session.execute(
                update(TaskRow)
                .where(TaskRow.id == task.id, TaskRow.state == TaskState.QUEUED.value)
                .values(state=TaskState.RUNNING.value)
                .execution_options(synchronize_session=False)
            ),
        )
        if won.rowcount != 1:  # pragma: no cover - only another process can win here
            return None
        device = describe_device(info)
        task.started_at = now
        task.provider_id = poller.id
        task.provider_name = poller.name
        lease = LeaseRow(
            id=new_id("l"),
            task_id=task.id,
            provider_id=poller.id,
            created_at=now,
            expires_at=now + ttl,
        )
        session.add(lease)
        resume = resume_point(session, task)  # an earlier provider was lost: go on from here
        verifier = None
        if replica is not None and verification is not None:
            open_replica(session, task, verification, replica, now)
        elif verification is not None:
            chosen = choose_verifier(
                session,
                poller.id,
                provider.address,
                now,
                seen_since=now - ctx.settings.offline_after_seconds,
            )
            verifier = chosen.address if chosen is not None else None
            task.verification = verification.model_copy(
                update={"assigned_verifier": verifier}
            ).model_dump_json()
        if task.payment is not None and ctx.chain is not None and provider.address is not None:
            task.payment = _assign_on_chain(
                ctx.chain, Payment.model_validate_json(task.payment), provider.address,
                verifier, replica.address if replica is not None else None,
                resume[0] if resume is not None else None, task.id,
            ).model_dump_json()  # fmt: skip
        running = f"running on provider {poller.name} ({device})"
        if resume is not None:
            running = (
                f"provider {resume[1]} lost, resumed from step {resume[0].step} "
                f"on provider {poller.name} ({device})"
            )
        set_state(
            session,
            task,
            TaskState.RUNNING,
            running,
            now,
            provider={"id": poller.id, "name": poller.name, "device": device},
        )
        session.flush()
        return Lease(
            id=lease.id,
            task=task_from_row(task),
            provider_id=poller.id,
            expires_at=lease.expires_at,
            ttl_seconds=ttl,
            resume=resume[0] if resume is not None else None,
        )


def _assign_on_chain(
    chain: ChainLink,
    payment: Payment,
    address: str,
    verifier: str | None,
    replica: str | None,
    resume: CheckpointPost | None,
    task_id: str,
) -> Payment:
    """Assign the paid task to ``address`` on chain, or hand it over from a lost provider.

    A resumed run is handed over with ``reassign`` and the lost provider's
    signed claim for the checkpoint it resumes from (paid at settlement).
    """
    key = bytes.fromhex(payment.task_key[2:])
    try:
        if resume is not None and resume.claim is not None and payment.provider_address:
            claim = resume.claim
            step, leaf = resume.step, bytes.fromhex(resume.leaves[-1].leaf[2:])
            tx = chain.reassign(
                key, address, verifier, (step, leaf, claim.amount_wei, claim.signature)
            )
            handover = Handover(
                provider_address=payment.provider_address, step=step, amount_wei=claim.amount_wei
            )
            return add_tx(handed_over(payment, handover, address), tx)
        price = payment.order.max_price_wei // (2 if replica is not None else 1)
        tx = chain.assign(key, address, price, verifier, replica)
    except MarketError as exc:
        if resume is None and _assigned_to(chain, key, address):
            # a mined assign whose database transaction was lost (a replica killed
            # between the two): the chain already says this provider runs it
            return payment.model_copy(
                update={"provider_address": address, "provider2_address": replica,
                        "price_wei": payment.order.max_price_wei // (2 if replica else 1)}
            )  # fmt: skip
        raise _AssignRefused(task_id, f"task {task_id} could not be assigned: {exc}") from None
    return payment.model_copy(
        update={
            "provider_address": address,
            "provider2_address": replica,
            "price_wei": price,
            "transactions": [*payment.transactions, tx],
        }
    )


def _assigned_to(chain: ChainLink, key: bytes, address: str) -> bool:
    try:
        on_chain = chain.task(key)
    except Exception:  # an unreachable node: treat as refused
        return False
    provider = on_chain.provider or ""
    return on_chain.status is TaskStatus.ASSIGNED and provider.lower() == address.lower()


def expire_leases(ctx: Context, now: float | None = None) -> int:
    """Release leases whose provider went silent; resume or fail their running tasks.

    A task with a checkpoint posted during the run goes back to the queue to
    resume from it (see ``._resume``); any other fails.

    Returns
    -------
    int
        How many tasks were resumed or failed (each got a ``state`` event).
    """
    now = time.time() if now is None else now
    ttl = _ttl_words(ctx)
    failed = resumed = 0
    with ctx.db.write() as session:
        rows = session.execute(
            select(LeaseRow, ProviderRow)
            .join(ProviderRow, ProviderRow.id == LeaseRow.provider_id)
            .where(LeaseRow.released_at.is_(None), LeaseRow.expires_at < now)
        ).all()
        for lease, provider in rows:
            lease.released_at = now
            lease.release_reason = f"it expired (no heartbeat for {ttl} s)"
            provider.offline = True
            task = task_row(session, lease.task_id)
            if task.state == TaskState.RUNNING.value and lost_run(
                session, task, provider.name, f"no heartbeat for {ttl} s", now
            ):
                resumed += 1
                continue
            if task.state == TaskState.RUNNING.value:
                message = (
                    f"provider {provider.name} stopped responding during the run "
                    f"(no heartbeat for {ttl} s); the task failed. {_why_not_resumed(task)}"
                )
                task.error = message
                end_run(session, task, TaskState.FAILED, message, now)
                failed += 1
    return failed + resumed


def _why_not_resumed(task: TaskRow) -> str:
    if (task.gpus or 1) > 1:
        return (
            f"A task of {task.gpus} ranks is not resumed on another provider (only rank 0 "
            "commits checkpoints; see docs/multi_gpu.md)."
        )
    if task.checkpoint is None:
        return (
            "It had posted no checkpoint to resume from (no optimizer step reached a "
            "checkpoint yet, or the cell takes none)."
        )
    if task.payment is not None and not _replicated(task):
        return (
            f"A paid task is handed over on chain at most {MAX_HANDOVERS} times; the escrow "
            "is refunded at its deadline (see docs/faults.md)."
        )
    return "A replicated task is not resumed on another provider."


def _replicated(task: TaskRow) -> bool:
    if not task.verification:
        return False
    return Verification.model_validate_json(task.verification).mode == "replicate"


def grant_grace(ctx: Context, now: float | None = None) -> int:
    """Give every held lease a full ttl from ``now`` (called when the coordinator starts).

    Providers could not heartbeat while the coordinator was down; they get one
    ttl to check back in before their tasks are failed.

    Returns
    -------
    int
        How many leases were renewed.
    """
    now = time.time() if now is None else now
    with ctx.db.write() as session:
        held = session.scalars(select(LeaseRow).where(LeaseRow.released_at.is_(None))).all()
        for lease in held:
            lease.expires_at = max(lease.expires_at, now + ctx.settings.lease_ttl_seconds)
        return len(held)
