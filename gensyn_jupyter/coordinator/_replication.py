"""``--verify replicate``: a second provider runs the task; equal roots verify it at once.

When the first provider claims a replicated task, a second one (online, not
the same key) is assigned with it on chain and gets a ``replica`` job in its
lease poll: it runs the same bundle, commits its own root on chain and posts
its manifest here. Once both results are in, equal roots verify the task
without any replay (the contract opens the challenge window); different roots
(the contract marks the task Disputed) send the first divergent segment to the
referee, who replays only that segment from the last agreed checkpoint and
rules: the replica whose leaf differs from the referee's is slashed.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocol import Payment, ResultManifest, TaskState, Verdict, Verification, VerifyJob
from ._context import Context
from ._db import ProviderRow, TaskRow, VerifyJobRow
from ._errors import ApiError
from ._ids import new_id
from ._tasks import set_state, task_row
from ._verification import add_job, begin_spot, settle_or_wait

__all__ = ["begin_verification", "open_replica", "post_replica", "rival_ruling"]


def open_replica(
    session: Session, task: TaskRow, verification: Verification, replica: ProviderRow, now: float
) -> None:
    """Give ``replica`` the second run of ``task`` (called as the first provider claims it)."""
    job = VerifyJob(id=new_id("v"), kind="replica")
    add_job(session, task.id, job, now, for_provider=replica.id)
    task.verification = verification.model_copy(
        update={"replica_provider": replica.name}
    ).model_dump_json()


def begin_verification(
    ctx: Context, session: Session, task: TaskRow, manifest: ResultManifest, now: float
) -> None:
    """After the first provider's result: a spot check, or wait for (and compare) the replica."""
    verification = Verification.model_validate_json(task.verification or "")
    if verification.mode == "spot":
        begin_spot(ctx, session, task, manifest, now)
        return
    set_state(
        session,
        task,
        TaskState.VERIFYING,
        f"replicated: waiting for the second run on {verification.replica_provider}",
        now,
    )
    _compare(session, task, now)


def post_replica(ctx: Context, job_id: str, token: str, manifest: ResultManifest) -> None:
    """The second provider's result of a replicated task (its commit is on chain)."""
    from ._providers import authenticate

    for field, sha in (("values", manifest.values), ("tensors", manifest.tensors)):
        if sha is not None and not ctx.blobs.exists(sha):
            raise ApiError(400, f"the replica names blob {sha} ({field}), not uploaded", field)
    now = time.time()
    with ctx.db.write() as session:
        provider = authenticate(session, token)
        row = session.get(VerifyJobRow, job_id)
        if row is None or row.kind != "replica":
            raise ApiError(404, f"replica job {job_id} not found", "job_id")
        if row.provider_id != provider.id:
            raise ApiError(403, f"replica job {job_id} was given to another provider")
        if row.done_at is not None:
            raise ApiError(409, f"replica job {job_id} already has a result")
        row.done_at = now
        row.verdict = manifest.model_dump_json()
        task = task_row(session, row.task_id)
        if task.state == TaskState.VERIFYING.value:
            _compare(session, task, now)


def _replica_manifest(session: Session, task: TaskRow) -> ResultManifest | None:
    row = session.scalar(
        select(VerifyJobRow).where(
            VerifyJobRow.task_id == task.id,
            VerifyJobRow.kind == "replica",
            VerifyJobRow.done_at.is_not(None),
        )
    )
    return ResultManifest.model_validate_json(row.verdict) if row and row.verdict else None


def _compare(session: Session, task: TaskRow, now: float) -> None:
    """Both runs are in: equal roots verify the task; different ones go to the referee."""
    primary = ResultManifest.model_validate_json(task.result) if task.result else None
    replica = _replica_manifest(session, task)
    if primary is None or replica is None:
        return
    verification = Verification.model_validate_json(task.verification or "")
    name = verification.replica_provider
    mine, theirs = primary.commitment, replica.commitment
    if mine is None or theirs is None or replica.error is not None:
        why = replica.error.message if replica.error is not None else "no commitment"
        set_state(
            session,
            task,
            TaskState.DISPUTED,
            f"replicated: the second run on {name} cannot be compared ({why}); "
            "its payment waits for the referee",
            now,
        )
        return
    verification.replica_root = theirs.root
    if mine.root == theirs.root:
        verification.outcome = "verified"
        task.verification = verification.model_dump_json()
        settle_or_wait(
            session,
            task,
            f"verified: replicated on {name}, the same root {mine.root[:10]}… "
            f"({len(mine.leaves)} leaves bit for bit); nothing had to be replayed",
            now,
        )
        return
    diverged = (
        next(i for i, (a, b) in enumerate(zip(mine.leaves, theirs.leaves, strict=False)) if a != b)
        if len(mine.leaves) == len(theirs.leaves)
        else min(len(mine.leaves), len(theirs.leaves))
    )
    segment = max(0, diverged - 1)
    blobs = {c.leaf: c for c in primary.checkpoints}
    replica_blobs = {c.leaf: c for c in replica.checkpoints}
    job = VerifyJob(
        id=new_id("v"),
        kind="referee",
        segment=segment,
        commitment=mine,
        rival=theirs,
        checkpoint=(blobs.get(segment) or replica_blobs.get(segment)) if segment > 0 else None,
        provider_address=_payment_address(task, primary=True),
        rival_address=_payment_address(task, primary=False),
    )
    add_job(session, task.id, job, now)
    task.verification = verification.model_dump_json()
    set_state(
        session,
        task,
        TaskState.DISPUTED,
        f"replicated on {name}: the roots differ from leaf {diverged} (step "
        f"{mine.leaves[min(diverged, len(mine.leaves) - 1)].step}); the referee re-executes "
        f"segment {segment} only",
        now,
    )


def _payment_address(task: TaskRow, *, primary: bool) -> str | None:
    """The on-chain address of the first provider or of the replica (from TaskAssigned)."""
    if task.payment is None:
        return None
    payment = Payment.model_validate_json(task.payment)
    return payment.provider_address if primary else payment.provider2_address


def rival_ruling(
    session: Session,
    task: TaskRow,
    verification: Verification,
    job: VerifyJob,
    verdict: Verdict,
    now: float,
) -> None:
    """The referee replayed the first divergent segment of two replicas."""
    assert job.rival is not None
    verification.ruling = verdict
    index = job.segment + 1
    rival_leaf = job.rival.leaves[index].leaf if index < len(job.rival.leaves) else None
    name = verification.replica_provider
    where = f"segment {job.segment}"
    if verdict.matches:  # the first provider's leaf: the replica cheated
        verification.outcome = "verified"
        task.verification = verification.model_dump_json()
        tail = (
            "; the escrow is refunded in full (the contract pays nobody after a fraud)"
            if task.payment is not None
            else ""
        )
        set_state(
            session,
            task,
            TaskState.VERIFIED,
            f"the referee re-executed {where}: the replica on {name} cheated and is slashed; "
            f"your result is the one the referee reproduced{tail}",
            now,
        )
        set_state(session, task, TaskState.SETTLED, "settled: the replica was slashed", now)
        return
    verification.outcome = "fraud" if verdict.leaf == rival_leaf else "pending"
    task.verification = verification.model_dump_json()
    if verdict.leaf == rival_leaf:
        state = TaskState.SLASHED if task.payment is not None else TaskState.FAILED
        set_state(
            session,
            task,
            state,
            f"fraud proven: the referee re-executed {where} and got the replica's state, not "
            "the first provider's; nothing is loaded"
            + ("; its stake is slashed and your escrow refunded" if task.payment else ""),
            now,
        )
        return
    set_state(
        session,
        task,
        TaskState.FAILED,
        f"the replicas disagree from {where} and the referee's replay matches neither "
        "(the cell may not be reproducible): nothing is loaded",
        now,
    )
