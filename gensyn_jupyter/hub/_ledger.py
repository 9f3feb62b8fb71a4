"""The class's spend ledger: what each student's tasks hold in escrow and what they paid.

Like the signer's :class:`gensyn_jupyter.chain.BudgetLedger`, but the cap is
one budget per student for the whole class (not per day): a task counts its
order's total (``maxPayment + verifierFee``) while its escrow is open, then
what it actually paid once it settled. A task is counted once, however often
it is looked at.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chain import BudgetDecision
from ..config import write_json_atomic
from ..protocol import TaskOrder, format_eth

__all__ = ["ClassLedger", "LedgerEntry", "Spend"]

_ASK = "ask your instructor for a larger budget, or lower --max-seconds"


@dataclass(frozen=True)
class Spend:
    """A student's budget and what is used of it, in wei."""

    budget_wei: int
    spent_wei: int
    held_wei: int

    @property
    def left_wei(self) -> int:
        """What new orders may still put in escrow."""
        return max(0, self.budget_wei - self.spent_wei - self.held_wei)


@dataclass(frozen=True)
class LedgerEntry:
    """One approved task: its order's total, and what it paid once settled (else None)."""

    max_wei: int
    paid_wei: int | None
    approved_at: float


class ClassLedger:
    """Every student's approved tasks, persisted as JSON at ``path`` (atomic writes).

    Parameters
    ----------
    path
        The JSON file (created on the first approval).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClassLedger(path={str(self.path)!r})"

    def spend(self, user: str, budget_wei: int) -> Spend:
        """What ``user`` spent and holds against ``budget_wei``."""
        with self._lock:
            entries = self._entries(self._load(), user)
        return _spend(entries, budget_wei)

    def decide(
        self, user: str, order: TaskOrder, *, budget_wei: int, per_task_wei: int = 0
    ) -> BudgetDecision:
        """Whether ``order`` fits in what is left of ``user``'s budget (nothing is recorded).

        Returns
        -------
        BudgetDecision
            Approved, or refused with a reason that names the budget, what is
            spent and held, and what to do.
        """
        amount = order.total_wei
        if per_task_wei and amount > per_task_wei:
            return BudgetDecision(
                False,
                f"this task may cost up to {format_eth(amount)}, above the class's per-task "
                f"limit of {format_eth(per_task_wei)} set by your instructor: {_ASK}",
            )
        with self._lock:
            entries = self._entries(self._load(), user)
        if order.task_id in entries:
            return BudgetDecision(True, f"task {order.task_id} is already approved")
        spend = _spend(entries, budget_wei)
        if amount > spend.left_wei:
            return BudgetDecision(
                False,
                f"over your class budget: this task may cost up to {format_eth(amount)}, "
                f"but only {format_eth(spend.left_wei)} is left of your budget of "
                f"{format_eth(budget_wei)} ({format_eth(spend.spent_wei)} spent, "
                f"{format_eth(spend.held_wei)} held for unfinished tasks); {_ASK}",
            )
        return BudgetDecision(
            True,
            f"within the class budget: {format_eth(amount)} of {format_eth(spend.left_wei)} left",
        )

    def hold(self, user: str, order: TaskOrder) -> None:
        """Count ``order``'s total against ``user`` until the task settles."""
        with self._lock:
            data = self._load()
            tasks = data["users"].setdefault(user, {})
            if order.task_id not in tasks:
                tasks[order.task_id] = {
                    "max_wei": str(order.total_wei),
                    "paid_wei": None,
                    "approved_at": time.time(),
                }
                self._save(data)

    def release(self, user: str, task_id: str) -> None:
        """Forget a hold whose escrow was never funded (the approval failed)."""
        with self._lock:
            data = self._load()
            if data["users"].get(user, {}).pop(task_id, None) is not None:
                self._save(data)

    def settle(self, user: str, task_id: str, paid_wei: int) -> None:
        """Count what the task actually paid instead of its maximum."""
        with self._lock:
            data = self._load()
            entry = data["users"].get(user, {}).get(task_id)
            if entry is not None and entry["paid_wei"] is None:
                entry["paid_wei"] = str(paid_wei)
                self._save(data)

    def entries(self, user: str) -> dict[str, LedgerEntry]:
        """The approved tasks of ``user`` by task id."""
        with self._lock:
            return self._entries(self._load(), user)

    def users(self) -> list[str]:
        """Every user with an approved task, sorted."""
        with self._lock:
            return sorted(self._load()["users"])

    @staticmethod
    def _entries(data: dict[str, Any], user: str) -> dict[str, LedgerEntry]:
        found: dict[str, LedgerEntry] = {}
        for task_id, raw in data["users"].get(user, {}).items():
            paid = raw.get("paid_wei")
            found[task_id] = LedgerEntry(
                max_wei=int(raw["max_wei"]),
                paid_wei=None if paid is None else int(paid),
                approved_at=float(raw.get("approved_at", 0.0)),
            )
        return found

    def _load(self) -> dict[str, Any]:
        try:
            data: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "users": {}}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"the class ledger {self.path} cannot be read ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise RuntimeError(f"the class ledger {self.path} is damaged")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.path, data, dir_mode=0o700)


def _spend(entries: dict[str, LedgerEntry], budget_wei: int) -> Spend:
    spent = sum(e.paid_wei for e in entries.values() if e.paid_wei is not None)
    held = sum(e.max_wei for e in entries.values() if e.paid_wei is None)
    return Spend(budget_wei=budget_wei, spent_wei=spent, held_wei=held)
