"""What a student and the instructor read: budgets, spend, tasks and their verification.

``GET <prefix>api/me`` is the caller's own account; ``GET <prefix>api/class``
is every student's, for Hub admins and ``c.GensynClass.instructors`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ..protocol import TaskState, raise_for_error
from ._ledger import ClassLedger

__all__ = ["student_view", "task_summary", "verification_state"]

_RUNNING = frozenset(
    {
        TaskState.AWAITING_APPROVAL.value,
        TaskState.QUEUED.value,
        TaskState.RUNNING.value,
        TaskState.COMMITTED.value,
        TaskState.VERIFYING.value,
    }
)


def verification_state(task: dict[str, Any]) -> str:
    """One word on whether the task's result was checked.

    ``pending`` until it is known; ``verified`` when spot checks or
    replication agreed; ``trusted`` for ``--verify none`` once the provider
    committed; ``fraud`` or ``rejected_challenge`` as ruled; ``none`` for a
    task that produced no result (cancelled, failed, expired).
    """
    verification = task.get("verification")
    if isinstance(verification, dict) and verification.get("outcome"):
        return str(verification["outcome"])
    state = str(task.get("state", ""))
    if state == TaskState.SLASHED.value:
        return "fraud"
    if state in _RUNNING:
        return "pending"
    if state in (TaskState.VERIFIED.value, TaskState.SETTLED.value):
        mode = (task.get("spec") or {}).get("verify", "none")
        return "trusted" if mode == "none" else "verified"
    return "none"


def task_summary(task: dict[str, Any]) -> dict[str, Any]:
    """The fields of a coordinator ``Task`` the class view shows."""
    spec = task.get("spec") or {}
    payment = task.get("payment") or {}
    order = payment.get("order") or {}
    result = task.get("result") or {}
    commitment = result.get("commitment") or {}
    max_wei = int(order.get("max_price_wei", 0)) + int(order.get("verifier_fee_wei", 0))
    return {
        "id": task.get("id"),
        "state": task.get("state"),
        "label": spec.get("label"),
        "created_at": task.get("created_at"),
        "provider": task.get("provider_name"),
        "gpu_seconds": task.get("gpu_seconds", 0.0),
        "verify": spec.get("verify", "none"),
        "verification": verification_state(task),
        "commitment_root": commitment.get("root"),
        "max_wei": max_wei,
        "paid_wei": int(payment.get("provider_paid_wei", 0))
        + int(payment.get("verifier_paid_wei", 0)),
        "refunded_wei": int(payment.get("refunded_wei", 0)),
        "outcome": payment.get("outcome"),
        "funded": bool(payment.get("funded", False)),
    }


def student_view(
    *,
    user: str,
    address: str | None,
    budget_wei: int,
    ledger: ClassLedger,
    http: httpx.Client,
    session: Callable[[bool], str] | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    """One student's account, budget and tasks (newest first), read now.

    ``session(renew)`` gives the student's coordinator session token: the
    coordinator lists an account's tasks to that account only (a session it
    forgot is renewed once). Blocking: call it in a worker thread.
    """
    spend = ledger.spend(user, budget_wei)
    tasks: list[dict[str, Any]] = []
    if address is not None:
        params: dict[str, str | int] = {"account": address, "limit": limit}
        for renew in (False, True):
            headers = {"authorization": f"Bearer {session(renew)}"} if session else None
            response = http.get("/v1/tasks", params=params, headers=headers)
            if response.status_code != 401 or session is None:
                break
        raise_for_error(response)
        tasks = [task_summary(t) for t in response.json()]
    return {
        "user": user,
        "address": address,
        "budget_wei": spend.budget_wei,
        "spent_wei": spend.spent_wei,
        "held_wei": spend.held_wei,
        "left_wei": spend.left_wei,
        "tasks": tasks,
    }
