"""A paid task's escrow: the order to sign, the signed order, and what the chain says.

The coordinator never holds money. It drafts the ``TaskOrder`` the owner
signs, checks the signed order (signature, chain, contract, nonce) and the
escrow on chain, and moves the task through its states from contract events.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..chain import (
    MarketError,
    OrderRejected,
    TaskStatus,
    check_order,
    format_eth,
    recover_order_signer,
)
from ..protocol import (
    Handover,
    Payment,
    SignedOrder,
    Task,
    TaskOrder,
    TaskSpec,
    TaskState,
    TxRef,
    task_key,
)
from ._chain import ChainLink
from ._context import Context
from ._db import OrderRow, TaskRow
from ._errors import ApiError
from ._tasks import owned_row, set_state, task_from_row, task_row

__all__ = [
    "accept_order",
    "add_tx",
    "awaiting_message",
    "draft_payment",
    "handed_over",
    "payment_of",
    "save_payment",
]


def payment_of(row: TaskRow) -> Payment | None:
    """The task's payment record, or None on a free task."""
    return Payment.model_validate_json(row.payment) if row.payment else None


def save_payment(row: TaskRow, payment: Payment) -> None:
    """Store ``payment`` on the row (inside the caller's transaction)."""
    row.payment = payment.model_dump_json()


def add_tx(payment: Payment, tx: TxRef) -> Payment:
    """``payment`` with ``tx`` recorded once (its block filled in when it is learnt later).

    A fund or commit is recorded when it is sent, before it is mined; the
    watcher then sees its event, with the block.
    """
    transactions = list(payment.transactions)
    for index, known in enumerate(transactions):
        if known.hash == tx.hash and known.kind == tx.kind:
            if known.block is not None or tx.block is None:
                return payment
            transactions[index] = tx
            return payment.model_copy(update={"transactions": transactions})
    return payment.model_copy(update={"transactions": [*transactions, tx]})


def handed_over(payment: Payment, handover: Handover, next_provider: str) -> Payment:
    """``payment`` after a lost provider's task went to ``next_provider`` (recorded once).

    The next provider may claim what is left of the price.
    """
    if any(
        h.provider_address.lower() == handover.provider_address.lower() and h.step == handover.step
        for h in payment.handovers
    ):
        return payment
    left = (payment.price_wei or 0) - handover.amount_wei
    return payment.model_copy(
        update={
            "handovers": [*payment.handovers, handover],
            "provider_address": next_provider,
            "price_wei": max(0, left),
        }
    )


def draft_payment(
    chain: ChainLink, session: Session, task_id: str, account: str, spec: TaskSpec, now: float
) -> Payment:
    """The order the owner must sign for a new task, and its empty payment record."""
    rate = chain.config.rate_wei_per_gpu_second
    used = session.scalar(select(func.max(OrderRow.nonce)).where(OrderRow.account == account))
    drafted = session.scalar(
        select(func.count()).select_from(TaskRow).where(TaskRow.account == account)
    )
    nonce = max(int(used or 0), int(drafted or 0)) + 1
    order = TaskOrder(
        task_id=task_id,
        spec_hash=spec.bundle,
        # replicate: two providers run the task, each paid up to half
        max_price_wei=rate
        * spec.gpus
        * spec.max_seconds
        * (2 if spec.verify == "replicate" else 1),
        verifier_fee_wei=0,
        verify=spec.verify,
        deadline=int(now) + spec.max_seconds + chain.config.deadline_slack_s,
        nonce=nonce,
        chain_id=chain.chain_id,
        contract=chain.market.address,
        submitter=account,
    )
    return Payment(
        order=order, task_key="0x" + task_key(task_id).hex(), rate_wei_per_gpu_second=rate
    )


def awaiting_message(payment: Payment) -> str:
    """What a task waiting for its owner's wallet says."""
    order = payment.order
    return (
        f"awaiting approval: sign and fund at most {format_eth(order.total_wei)} from "
        f"{order.submitter}: in the Gensyn panel, with `gensyn approve {order.task_id}`, "
        "or by `gensyn signer` within its budget"
    )


def _check_against_draft(signed: SignedOrder, draft: TaskOrder) -> None:
    order = signed.order
    for name in ("task_id", "spec_hash", "max_price_wei", "verifier_fee_wei", "verify", "deadline"):
        got, want = getattr(order, name), getattr(draft, name)
        if got != want:
            raise ApiError(
                400,
                f"order field '{name}' is {got!r} but the task's quote says {want!r}: "
                "sign the order the task shows (GET /v1/tasks/{id}, payment.order)",
                f"order.{name}",
            )


def _check_escrow(chain: ChainLink, order: TaskOrder) -> None:
    try:
        onchain = chain.task(task_key(order.task_id))
    except MarketError as exc:  # pragma: no cover - a view does not revert
        raise ApiError(400, f"could not read the escrow: {exc}") from None
    if onchain.status == TaskStatus.NONE:
        raise ApiError(
            402,
            f"no escrow for task {order.task_id} on chain {order.chain_id}: send "
            f"createTask with {format_eth(order.total_wei)} to {order.contract} first",
            "funding_tx",
        )
    if onchain.submitter.lower() != order.submitter.lower():
        raise ApiError(
            409,
            f"the escrow of task {order.task_id} was funded by {onchain.submitter}, "
            f"not by the order's signer {order.submitter}",
        )
    if (onchain.max_payment, onchain.verifier_fee) != (order.max_price_wei, order.verifier_fee_wei):
        raise ApiError(
            402,
            f"the escrow holds {format_eth(onchain.max_payment + onchain.verifier_fee)} but the "
            f"order is for {format_eth(order.total_wei)}",
            "funding_tx",
        )
    if onchain.deadline != order.deadline:
        raise ApiError(409, "the escrow on chain was created with another deadline")


def accept_order(ctx: Context, task_id: str, account: str, signed: SignedOrder) -> Task:
    """Check a signed order and its funding; queue the task when both hold.

    Raises
    ------
    ApiError
        400 for a bad signature, chain, contract or a field that differs from
        the quote; 402 when the escrow is missing or short; 403 when the
        signer is not the task's owner; 409 for a replayed order or nonce.
    """
    chain = ctx.chain
    if chain is None:
        raise ApiError(404, "this coordinator has no chain: tasks need no order here")
    try:
        check_order(
            signed, chain_id=chain.chain_id, contract=chain.market.address, expected_submitter=None
        )
        signer = recover_order_signer(signed)
    except OrderRejected as exc:
        raise ApiError(400, f"order rejected: {exc.reason}", "signature") from None
    with ctx.db.read() as session:
        row = owned_row(session, task_id, account)
        owner, payment = row.account, payment_of(row)
    if payment is None or owner is None:
        raise ApiError(409, f"task {task_id} is not a paid task; it needs no order")
    if signer.lower() != owner.lower():
        raise ApiError(
            403, f"the order is signed by {signer}, not by {owner} who submitted the task"
        )
    _check_against_draft(signed, payment.order)
    _check_escrow(chain, signed.order)
    now = time.time()
    with ctx.db.write() as session:
        row = task_row(session, task_id)
        used = session.get(OrderRow, (owner, signed.order.nonce))
        if used is not None:
            raise ApiError(
                409,
                f"order nonce {signed.order.nonce} of {owner} was already used "
                f"(task {used.task_id}): an order approves one task once",
                "order.nonce",
            )
        if session.scalar(select(OrderRow).where(OrderRow.task_id == task_id)) is not None:
            raise ApiError(409, f"task {task_id} already has a signed order")
        session.add(
            OrderRow(
                account=owner,
                nonce=signed.order.nonce,
                task_id=task_id,
                signature=signed.signature,
                created_at=now,
            )
        )
        payment = payment_of(row) or payment
        payment = payment.model_copy(update={"signed": True, "funded": True})
        if signed.funding_tx:
            payment = add_tx(payment, TxRef(kind="fund", hash=signed.funding_tx.lower()))
        save_payment(row, payment)
        if row.state == TaskState.AWAITING_APPROVAL.value:
            set_state(
                session,
                row,
                TaskState.QUEUED,
                f"approved: {format_eth(signed.order.total_wei)} in escrow; waiting for a provider",
                now,
            )
        return task_from_row(row)
