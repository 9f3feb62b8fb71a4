"""Approve a student's task within the instructor's budget, and settle what it spent.

Both run in worker threads (web3 and the signer block). The service's
budget decision is :class:`ClassLedger`'s; funding the escrow and signing the
order is :func:`gensyn_jupyter.chain.Signer.approve`, the code ``gensyn
signer`` runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from ..chain import MarketError
from ..protocol import CoordinatorError, TaskOrder, TaskState, raise_for_error
from ._ledger import ClassLedger
from ._students import Student

__all__ = ["Approval", "approve_within_budget", "settle_student"]

_log = logging.getLogger("gensyn_jupyter.hub")
_TERMINAL = frozenset(s.value for s in TaskState if s.terminal)


@dataclass(frozen=True)
class Approval:
    """What became of a task's approval: the queued task, or why it was not approved."""

    task: dict[str, Any] | None
    refused: str | None = None
    failed: str | None = None


def approve_within_budget(
    student: Student,
    task: dict[str, Any],
    *,
    ledger: ClassLedger,
    budget_wei: int,
    per_task_wei: int,
) -> Approval:
    """Fund and sign ``task``'s order if it fits in the student's budget.

    The decision and the hold are made under the student's lock, so two
    tasks submitted at once cannot both take the last of a budget.
    """
    order = TaskOrder.model_validate(task["payment"]["order"])
    with student.lock:
        decision = ledger.decide(
            student.user, order, budget_wei=budget_wei, per_task_wei=per_task_wei
        )
        if not decision.approved:
            _log.info("%s: %s refused: %s", student.user, order.task_id, decision.reason)
            return Approval(task=None, refused=decision.reason)
        ledger.hold(student.user, order)
        try:
            queued = student.signer.approve(order.task_id)
        except (MarketError, CoordinatorError, ValueError, httpx.HTTPError) as exc:
            ledger.release(student.user, order.task_id)
            _log.warning("%s: approving %s failed: %s", student.user, order.task_id, exc)
            return Approval(task=None, failed=str(exc))
    _log.info("%s: approved %s (%s wei in escrow)", student.user, order.task_id, order.total_wei)
    return Approval(task=queued.model_dump(mode="json"))


def settle_student(student: Student, *, ledger: ClassLedger, http: httpx.Client) -> int:
    """Count what the student's finished tasks paid; refund and withdraw what is theirs.

    Returns
    -------
    int
        How many tasks settled in this sweep.
    """
    held = [tid for tid, e in ledger.entries(student.user).items() if e.paid_wei is None]
    if not held:
        return 0
    session = {"authorization": f"Bearer {student.token}"}  # reads are the owner's only
    response = http.get(
        "/v1/tasks", params={"account": student.address, "limit": 1000}, headers=session
    )
    raise_for_error(response)
    listed = {t["id"]: t for t in response.json()}
    settled, refund = 0, False
    for task_id in held:
        task = listed.get(task_id)
        if task is None:
            one = http.get(f"/v1/tasks/{task_id}", headers=session)
            if one.status_code == 404:
                ledger.settle(student.user, task_id, 0)
                continue
            raise_for_error(one)
            task = one.json()
        payment = task.get("payment") or {}
        if payment.get("outcome") is not None:
            paid = int(payment.get("provider_paid_wei", 0)) + int(
                payment.get("verifier_paid_wei", 0)
            )
            ledger.settle(student.user, task_id, paid)
            settled += 1
        elif task["state"] == TaskState.CANCELLED.value and payment.get("funded"):
            refund = True
        elif task["state"] in _TERMINAL and not payment.get("funded"):
            ledger.settle(student.user, task_id, 0)
            settled += 1
    if refund or settled:
        with student.lock:
            if refund:
                student.signer.refund_cancelled()
            student.signer.withdraw()
    return settled
