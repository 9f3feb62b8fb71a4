"""Follow the market's events into task states, and keep settlement moving.

Each block range is applied in one database transaction together with the
cursor, and every event is recorded by (transaction, log index), so a
coordinator that restarts neither misses nor double-counts an event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..chain import MarketError, MarketEvent, format_eth
from ..protocol import Handover, Payment, TaskState, TxKind, TxRef
from ._context import Context
from ._db import ChainCursorRow, ChainEventRow, TaskRow
from ._payments import add_tx, handed_over, payment_of, save_payment
from ._tasks import set_state

__all__ = ["Keeper", "apply_new_events", "mark_settled"]

_log = logging.getLogger("gensyn_jupyter.coordinator.chain")
_MAX_RANGE = 2000
_TX_KIND: dict[str, TxKind] = {
    "TaskCreated": "fund",
    "TaskAssigned": "assign",
    "TaskReassigned": "reassign",
    "TaskCommitted": "commit",
    "TaskFinalized": "finalize",
    "TaskCancelled": "cancel",
    "TaskExpired": "expire",
    "TaskChallenged": "challenge",
    "FraudProven": "resolve",
    "ChallengeRejected": "resolve",
}
_UNDER_VERIFICATION = {TaskState.VERIFYING.value, TaskState.DISPUTED.value}
_ENDED_RUN = {TaskState.COMMITTED.value, TaskState.VERIFYING.value, TaskState.VERIFIED.value}


def _task_for(session: Session, key: bytes) -> TaskRow | None:
    return session.scalar(select(TaskRow).where(TaskRow.chain_key == "0x" + key.hex()))


def _apply(
    session: Session, row: TaskRow, payment: Payment, event: MarketEvent, now: float
) -> Payment:
    args = event.args
    name = event.name
    if name == "TaskCreated":
        payment = payment.model_copy(update={"funded": True})
    elif name == "TaskAssigned":
        payment = payment.model_copy(
            update={
                "provider_address": str(args["provider"]),
                "provider2_address": (
                    str(args["provider2"]) if int(str(args["provider2"]), 16) else None
                ),
                "price_wei": int(args["price"]),
            }
        )
    elif name == "TaskReassigned":
        payment = handed_over(
            payment,
            Handover(
                provider_address=str(args["from"]),
                step=int(args["step"]),
                amount_wei=int(args["paidFrom"]),
            ),
            str(args["to"]),
        )
    elif name == "TaskCommitted":
        payment = payment.model_copy(
            update={
                "amount_due_wei": int(args["amountDue"]),
                "challenge_ends_at": int(args["challengeEnd"]),
            }
        )
    elif name == "TaskFinalized":
        payment = payment.model_copy(
            update={
                "outcome": "finalized",
                "provider_paid_wei": int(args["paidProviders"]),
                "verifier_paid_wei": int(args["paidVerifier"]),
                "refunded_wei": int(args["refund"]),
            }
        )
        if row.state in _ENDED_RUN:
            mark_settled(session, row, payment, now)
    elif name == "TaskCancelled":
        payment = payment.model_copy(
            update={"outcome": "cancelled", "refunded_wei": int(args["refund"])}
        )
    elif name == "FraudProven":
        payment = payment.model_copy(
            update={
                "outcome": "slashed",
                "refunded_wei": payment.order.total_wei + int(args["toSubmitter"]),
            }
        )
        if not TaskState(row.state).terminal:
            set_state(
                session,
                row,
                TaskState.SLASHED,
                f"fraud proven on chain: the provider's stake was slashed by "
                f"{format_eth(int(args['slashed']))}; {format_eth(payment.refunded_wei)} "
                "credited back to you",
                now,
            )
    elif name == "TaskExpired":
        payment = payment.model_copy(
            update={"outcome": "expired", "refunded_wei": int(args["refund"])}
        )
        if not TaskState(row.state).terminal:
            set_state(
                session,
                row,
                TaskState.EXPIRED,
                f"expired: the deadline passed without a result; "
                f"{format_eth(payment.refunded_wei)} refunded",
                now,
            )
    return payment


def mark_settled(session: Session, row: TaskRow, payment: Payment, now: float) -> None:
    """Move a finished task whose escrow was finalized on chain to ``settled``."""
    paid = (
        f"settled: provider paid {format_eth(payment.provider_paid_wei)}, "
        f"{format_eth(payment.refunded_wei)} refunded"
    )
    if payment.handovers:
        lost = sum(h.amount_wei for h in payment.handovers)
        paid = (
            f"settled: providers paid {format_eth(payment.provider_paid_wei)} "
            f"({format_eth(lost)} of it for the checkpointed work of the "
            f"{len(payment.handovers)} lost), {format_eth(payment.refunded_wei)} refunded"
        )
    set_state(session, row, TaskState.SETTLED, paid, now, payment=_summary(payment))


def _summary(payment: Payment) -> dict[str, object]:
    return {
        "provider_paid_wei": payment.provider_paid_wei,
        "refunded_wei": payment.refunded_wei,
        "verifier_paid_wei": payment.verifier_paid_wei,
        "transactions": [t.model_dump() for t in payment.transactions],
    }


def apply_new_events(ctx: Context) -> int:
    """Apply the market events of blocks not read yet; returns how many were new."""
    chain = ctx.chain
    if chain is None:
        return 0
    latest = chain.block_number()
    with ctx.db.read() as session:
        cursor = session.get(ChainCursorRow, 1)
        last = cursor.block if cursor is not None else chain.config.from_block - 1
    if latest <= last:
        return 0
    to_block = min(latest, last + _MAX_RANGE)
    events = chain.events(last + 1, to_block)
    applied = 0
    now = time.time()
    with ctx.db.write() as session:
        for event in events:
            if session.get(ChainEventRow, (event.tx_hash, event.log_index)) is not None:
                continue
            session.add(
                ChainEventRow(
                    tx_hash=event.tx_hash,
                    log_index=event.log_index,
                    block=event.block_number,
                    name=event.name,
                )
            )
            raw_key = event.args.get("taskId")
            row = _task_for(session, bytes(raw_key)) if isinstance(raw_key, bytes) else None
            payment = payment_of(row) if row is not None else None
            if row is None or payment is None:
                continue
            kind = _TX_KIND.get(event.name)
            if kind is not None:
                payment = add_tx(
                    payment, TxRef(kind=kind, hash=event.tx_hash, block=event.block_number)
                )
            save_payment(row, _apply(session, row, payment, event, now))
            applied += 1
        cursor = session.get(ChainCursorRow, 1)
        if cursor is None:
            session.add(ChainCursorRow(id=1, block=to_block))
        else:
            cursor.block = to_block
    return applied


@dataclass
class Keeper:
    """Calls ``finalize`` after challenge windows and ``expire`` after deadlines."""

    retry_seconds: float = 1.0
    _next_try: dict[str, float] = field(default_factory=dict)

    def run_once(self, ctx: Context) -> int:
        """One pass over the paid tasks that wait on the chain; returns transactions sent."""
        chain = ctx.chain
        if chain is None:
            return 0
        now = time.time()
        block_time = max(int(now), int(chain.w3.eth.get_block("latest")["timestamp"]))
        # the next block is mined at the current time or later
        with ctx.db.read() as session:
            rows = session.execute(
                select(TaskRow.id, TaskRow.chain_key, TaskRow.payment, TaskRow.state).where(
                    TaskRow.payment.is_not(None)
                )
            ).all()
        sent = 0
        for task_id, key_hex, raw, state in rows:
            if raw is None:  # pragma: no cover - the query keeps paid tasks only
                continue
            if state in _UNDER_VERIFICATION:
                continue  # verifiers and the referee decide first
            payment = Payment.model_validate_json(raw)
            if (
                payment.outcome is not None
                or not payment.funded
                or self._next_try.get(task_id, 0) > now
            ):
                continue
            key = bytes.fromhex(str(key_hex)[2:])
            action = None
            if payment.challenge_ends_at is not None and block_time >= payment.challenge_ends_at:
                action = chain.finalize
            elif payment.amount_due_wei is None and block_time > payment.order.deadline:
                action = chain.expire
            if action is None:
                continue
            try:
                action(key)
                sent += 1
            except MarketError as exc:
                _log.info("keeper: %s on %s not yet possible: %s", action.__name__, task_id, exc)
                self._next_try[task_id] = now + self.retry_seconds
        return sent
