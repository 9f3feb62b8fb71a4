"""Spot verification: sample segments after a commit, hand them to verifiers, rule.

After a spot task's result is committed, a seed the provider could not
predict (the hash of the block that mined its commit, with the root) picks a
fraction of the run's segments. Each becomes a ``spot`` job another provider
takes from its lease poll, replays from the uploaded checkpoint and answers
with a signed verdict. Every leaf matches: the task is verified. A mismatch:
the verifier has challenged on chain; a ``referee`` job goes to the referee,
whose ruling (sent on chain by the referee itself) settles it: fraud slashes
the provider, otherwise the challenge is rejected.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..protocol import (
    Lease,
    Payment,
    ResultManifest,
    TaskState,
    Verdict,
    Verification,
    VerifyJob,
    verdict_message,
)
from ..verify import sample_segments, spot_seed
from ._context import Context
from ._db import ProviderRow, TaskRow, VerifyJobRow
from ._errors import ApiError
from ._events import append_event
from ._ids import new_id
from ._tasks import set_state, task_from_row, task_row

__all__ = [
    "JOB_TTL_SECONDS",
    "OPEN_TO_ANY_AFTER_SECONDS",
    "SPOT_FRACTION",
    "add_job",
    "begin_spot",
    "choose_verifier",
    "claim_job",
    "post_verdict",
    "settle_or_wait",
]

SPOT_FRACTION = 0.1
"""Fraction of a run's segments a spot check replays (at least one)."""
JOB_TTL_SECONDS = 300.0
"""A taken job not answered within this is open again."""
OPEN_TO_ANY_AFTER_SECONDS = 60.0
"""A job the assigned verifier has not taken by then goes to any other provider."""


def choose_verifier(
    session: Session,
    runner_id: str,
    runner_address: str | None,
    now: float,
    *,
    seen_since: float = 0.0,
    need_address: bool = True,
) -> ProviderRow | None:
    """The provider that will verify a spot task run by ``runner_id``: online, not it.

    Never one with the runner's address (a provider restarted under the same
    key has a second row): the contract refuses a provider as its own verifier.
    """
    query = select(ProviderRow).where(
        ProviderRow.id != runner_id,
        ProviderRow.offline.is_(False),
        ProviderRow.last_seen >= seen_since,  # not silent (a stopped daemon's row stays)
    )
    if need_address:
        query = query.where(ProviderRow.address.is_not(None))
    rows = session.scalars(query).all()
    own = (runner_address or "").lower()
    candidates = [
        r
        for r in rows
        if '"role":"referee"' not in r.info.replace(" ", "")
        and not (own and (r.address or "").lower() == own)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r.last_seen)


def _seed(ctx: Context, manifest: ResultManifest, root: str, task_id: str) -> bytes:
    if ctx.chain is not None and manifest.commit_tx is not None:
        receipt = ctx.chain.w3.eth.get_transaction_receipt(manifest.commit_tx)  # type: ignore[arg-type]
        return bytes(spot_seed(bytes(receipt["blockHash"]), root))
    # A free network has no block to draw from: the coordinator's own randomness,
    # drawn after the result arrived (the provider cannot predict it either).
    return hashlib.sha256(os.urandom(32) + task_id.encode() + root.encode()).digest()


def begin_spot(
    ctx: Context, session: Session, task: TaskRow, manifest: ResultManifest, now: float
) -> None:
    """Sample the segments of a committed spot task and open a job for each."""
    verification = _verification_of(task)
    commitment = manifest.commitment
    if commitment is None:
        set_state(
            session,
            task,
            TaskState.DISPUTED,
            "spot check impossible: the provider sent no checkpoint commitment, so no segment "
            "can be replayed; its payment waits for the referee",
            now,
        )
        task.verification = verification.model_dump_json()
        return
    segments = len(commitment.leaves) - 1
    seed = _seed(ctx, manifest, commitment.root, task.id)
    sampled = sample_segments(seed, segments, SPOT_FRACTION)
    verification = verification.model_copy(
        update={
            "segments": segments,
            "sampled": sampled,
            "seed": "0x" + seed.hex(),
            "fraction": SPOT_FRACTION,
        }
    )
    blobs = {c.leaf: c for c in manifest.checkpoints}
    missing = [i for i in sampled if i > 0 and i not in blobs]
    if missing:
        set_state(
            session,
            task,
            TaskState.DISPUTED,
            f"spot check impossible: the provider did not upload the checkpoints of leaves "
            f"{missing}; its payment waits for the referee",
            now,
        )
        task.verification = verification.model_dump_json()
        return
    payment_address = None
    if task.payment is not None:
        payment_address = Payment.model_validate_json(task.payment).provider_address
    for segment in sampled:
        job = VerifyJob(
            id=new_id("v"),
            kind="spot",
            segment=segment,
            commitment=commitment,
            checkpoint=blobs.get(segment) if segment > 0 else None,
            provider_address=payment_address,
        )
        add_job(session, task.id, job, now, verifier_address=verification.assigned_verifier)
    task.verification = verification.model_dump_json()
    listed = ", ".join(str(s) for s in sampled)
    set_state(
        session,
        task,
        TaskState.VERIFYING,
        f"spot check: segment{'s' if len(sampled) > 1 else ''} {listed} of {segments} drawn "
        f"from seed {verification.seed[:10]}…; verifiers replay them from the checkpoints",
        now,
    )


def add_job(session: Session, task_id: str, job: VerifyJob, now: float, **columns: Any) -> None:
    """Store a verification job for the lease polls (``columns``: who may take it)."""
    session.add(
        VerifyJobRow(
            id=job.id,
            task_id=task_id,
            kind=job.kind,
            segment=job.segment,
            job=job.model_dump_json(),
            created_at=now,
            **columns,
        )
    )


def _verification_of(task: TaskRow) -> Verification:
    if task.verification:
        return Verification.model_validate_json(task.verification)
    return Verification(mode="spot")


def _is_referee(ctx: Context, provider: ProviderRow) -> bool:
    if '"role":"referee"' not in provider.info.replace(" ", ""):
        return False
    if ctx.chain is None:
        return True
    return (provider.address or "").lower() == ctx.chain.referee.lower()


def claim_job(ctx: Context, provider_id: str) -> Lease | None:
    """Give the oldest open verification job this provider may take to it, or None."""
    now = time.time()
    with ctx.db.write() as session:
        provider = session.get(ProviderRow, provider_id)
        if provider is None:  # pragma: no cover - providers are never deleted
            return None
        referee = _is_referee(ctx, provider)
        query = (
            select(VerifyJobRow, TaskRow)
            .join(TaskRow, TaskRow.id == VerifyJobRow.task_id)
            .where(
                VerifyJobRow.done_at.is_(None),
                or_(VerifyJobRow.provider_id.is_(None), VerifyJobRow.expires_at < now),
                VerifyJobRow.kind.in_(["referee"] if referee else ["spot", "replica"]),
            )
            .order_by(VerifyJobRow.created_at)
        )
        if not referee:
            query = query.where(TaskRow.provider_id != provider.id)
        mine = (provider.address or "").lower()
        for job, task in session.execute(query).all():
            spec = VerifyJob.model_validate_json(job.job)
            if job.for_provider is not None and job.for_provider != provider.id:
                continue  # a replica run belongs to the provider assigned on chain
            if not referee and mine and (spec.provider_address or "").lower() == mine:
                continue  # the same key runs another daemon: nobody verifies their own work
            assigned = job.verifier_address
            waited = now - job.created_at
            if (
                not referee
                and job.for_provider is None
                and assigned is not None
                and assigned.lower() != (provider.address or "").lower()
                and waited < OPEN_TO_ANY_AFTER_SECONDS
            ):
                continue
            job.provider_id = provider.id
            job.expires_at = now + JOB_TTL_SECONDS
            return Lease(
                id=job.id,
                task=task_from_row(task),
                provider_id=provider.id,
                expires_at=job.expires_at,
                ttl_seconds=JOB_TTL_SECONDS,
                job=spec,
            )
        return None


def _check_signature(task: TaskRow, job: VerifyJob, verdict: Verdict, address: str | None) -> None:
    if task.payment is None:
        return
    if verdict.signature is None or address is None:
        raise ApiError(400, "a verdict on a paid task must be signed by the verifier", "signature")
    message = verdict_message(task.id, job.committed.root, job.kind, job.segment, verdict)
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=verdict.signature)
    except Exception:
        raise ApiError(400, "the verdict's signature is malformed", "signature") from None
    if signer.lower() != address.lower():
        raise ApiError(
            403, f"the verdict is signed by {signer}, not by this provider ({address})", "signature"
        )


def post_verdict(ctx: Context, job_id: str, token: str, verdict: Verdict) -> None:
    """Record a verifier's (or the referee's) verdict and move the task on."""
    from ._providers import authenticate

    now = time.time()
    with ctx.db.write() as session:
        provider = authenticate(session, token)
        row = session.get(VerifyJobRow, job_id)
        if row is None:
            raise ApiError(404, f"verification job {job_id} not found", "job_id")
        if row.provider_id != provider.id:
            raise ApiError(403, f"verification job {job_id} was given to another provider")
        if row.done_at is not None:
            raise ApiError(409, f"verification job {job_id} already has a verdict")
        job = VerifyJob.model_validate_json(row.job)
        task = task_row(session, row.task_id)
        _check_signature(task, job, verdict, provider.address)
        row.done_at = now
        row.verdict = verdict.model_dump_json()
        verification = _verification_of(task)
        if job.kind == "spot":
            _spot_verdict(session, task, verification, job, verdict, provider, now)
        elif job.rival is not None:
            from ._replication import rival_ruling

            rival_ruling(session, task, verification, job, verdict, now)
        else:
            _ruling(session, task, verification, job, verdict, now)


def _spot_verdict(
    session: Session,
    task: TaskRow,
    verification: Verification,
    job: VerifyJob,
    verdict: Verdict,
    provider: ProviderRow,
    now: float,
) -> None:
    key = str(job.segment)
    verification.verdicts[key] = verdict
    verification.verifiers[key] = provider.name
    task.verification = verification.model_dump_json()
    if task.state != TaskState.VERIFYING.value:
        return  # already disputed by another segment, or settled
    where = f"segment {job.segment} (leaf {job.segment} → {job.segment + 1})"
    if not verdict.matches:
        challenged = f" and challenged it on chain ({verdict.tx[:10]}…)" if verdict.tx else ""
        set_state(
            session,
            task,
            TaskState.DISPUTED,
            f"verifier {provider.name} replayed {where} and got a different state{challenged}; "
            "the referee re-executes that segment",
            now,
        )
        referee_job = job.model_copy(
            update={"id": new_id("v"), "kind": "referee", "challenger": provider.address}
        )
        add_job(session, task.id, referee_job, now)
        return
    done = [s for s in verification.sampled if str(s) in verification.verdicts]
    append_event(
        session,
        task.id,
        "log",
        {
            "message": f"verifier {provider.name}: {where} reproduced bit for bit "
            f"({len(done)} of {len(verification.sampled)})"
        },
        now,
    )
    if len(done) == len(verification.sampled):
        _verified(session, task, verification, now)


def _verified(session: Session, task: TaskRow, verification: Verification, now: float) -> None:
    verification.outcome = "verified"
    task.verification = verification.model_dump_json()
    names = sorted(set(verification.verifiers.values()))
    segments = ", ".join(str(s) for s in verification.sampled)
    message = (
        f"verified: spot check of segment{'s' if len(verification.sampled) > 1 else ''} "
        f"{segments} of {verification.segments} by {', '.join(names)}: every leaf reproduced "
        "bit for bit"
    )
    settle_or_wait(session, task, message, now)


def settle_or_wait(session: Session, task: TaskRow, message: str, now: float) -> None:
    if task.payment is not None:
        set_state(session, task, TaskState.VERIFIED, message + "; waiting for settlement", now)
        return
    set_state(session, task, TaskState.VERIFIED, message, now)
    set_state(session, task, TaskState.SETTLED, "settled: nothing to pay on a free network", now)


def _ruling(
    session: Session,
    task: TaskRow,
    verification: Verification,
    job: VerifyJob,
    verdict: Verdict,
    now: float,
) -> None:
    verification.ruling = verdict
    where = f"segment {job.segment}"
    if verdict.matches:
        verification.outcome = "rejected_challenge"
        task.verification = verification.model_dump_json()
        settle_or_wait(
            session,
            task,
            f"the referee re-executed {where} and got the provider's state: the challenge "
            "is rejected (the verifier's bond goes to the provider)",
            now,
        )
        return
    verification.outcome = "fraud"
    task.verification = verification.model_dump_json()
    if task.payment is not None and verdict.tx is None:
        set_state(
            session,
            task,
            TaskState.FAILED,
            f"the referee re-executed {where} and the provider's committed state is wrong, but "
            "the ruling could not be sent on chain (the challenge window had closed before the "
            "verifier's challenge landed): nothing was slashed and nothing is loaded",
            now,
        )
        return
    if task.payment is not None:
        message = (
            f"fraud proven: the referee re-executed {where} and the provider's committed state "
            "is wrong; its stake is slashed and your escrow refunded"
        )
        set_state(session, task, TaskState.SLASHED, message, now, **_tx(verdict))
    else:
        set_state(
            session,
            task,
            TaskState.FAILED,
            f"verification failed: the referee re-executed {where} and the provider's "
            "committed state is wrong (nothing to slash on a free network)",
            now,
        )


def _tx(verdict: Verdict) -> dict[str, Any]:
    return {"resolve_tx": verdict.tx} if verdict.tx else {}
