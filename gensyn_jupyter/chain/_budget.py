"""The auto-approve budget, kept by the signer (never by the kernel).

A :class:`BudgetLedger` decides whether an order may be signed without
asking (within the per-task and per-UTC-day caps of a :class:`BudgetPolicy`)
and remembers what it approved, one entry per task so a task re-signed is
never counted twice.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import write_json_atomic
from ..protocol import format_eth
from ..protocol._orders import TaskOrder

__all__ = [
    "BudgetDecision",
    "BudgetError",
    "BudgetLedger",
    "BudgetPolicy",
    "format_eth",
]

_WEI_PER_ETH = 10**18
_KEEP_DAYS = 90
_ASK = "approve this task in the Gensyn panel"


class BudgetError(Exception):
    """The budget ledger cannot be read or written."""


def _distinct(a: int, b: int) -> tuple[str, str]:
    """``a`` and ``b`` formatted with enough digits that different amounts read differently."""
    digits = 6
    while format_eth(a, digits=digits) == format_eth(b, digits=digits) and a != b and digits < 40:
        digits += 1
    return format_eth(a, digits=digits), format_eth(b, digits=digits)


@dataclass(frozen=True)
class BudgetPolicy:
    """What may be signed without asking.

    Parameters
    ----------
    enabled
        Whether auto-approval is on at all.
    per_task_wei
        The most one task's order (price ceiling plus verifier fee) may commit.
    per_day_wei
        The most all auto-approved orders of one UTC day may commit together.
    """

    enabled: bool
    per_task_wei: int
    per_day_wei: int

    def __post_init__(self) -> None:
        if self.per_task_wei < 0 or self.per_day_wei < 0:
            raise ValueError("budget caps must not be negative")

    @classmethod
    def devnet(cls) -> BudgetPolicy:
        """The devnet default: on, 1 ETH per task, 10 ETH per day (play money)."""
        return cls(enabled=True, per_task_wei=_WEI_PER_ETH, per_day_wei=10 * _WEI_PER_ETH)

    @classmethod
    def off(cls) -> BudgetPolicy:
        """No auto-approval: every order is approved by hand."""
        return cls(enabled=False, per_task_wei=0, per_day_wei=0)


@dataclass(frozen=True)
class BudgetDecision:
    """Whether an order may be signed without asking, and why (shown to the user)."""

    approved: bool
    reason: str


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


class BudgetLedger:
    """The approvals of one signer, persisted as JSON at ``path``.

    The file holds, per UTC day, the wei committed by auto-approved orders,
    and per task the amount and day it was recorded; entries older than 90
    days are dropped. Every write replaces the file atomically.

    Parameters
    ----------
    path
        The JSON file (created on the first :meth:`record`).
    policy
        The caps to decide with.
    """

    def __init__(self, *, path: Path, policy: BudgetPolicy) -> None:
        self.path = Path(path)
        self.policy = policy
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BudgetLedger(path={str(self.path)!r}, policy={self.policy!r})"

    def decide(self, order: TaskOrder, *, now: datetime | None = None) -> BudgetDecision:
        """Whether ``order`` is within the budget (this does not record it).

        Parameters
        ----------
        order
            The order to sign; it commits ``order.total_wei``.
        now
            The current time (defaults to UTC now; naive times are taken as UTC).

        Returns
        -------
        BudgetDecision
            Approved, or not with a reason naming the cap and what to do.
        """
        if not self.policy.enabled:
            return BudgetDecision(False, f"auto-approve is off: {_ASK}")
        amount, cap = order.total_wei, self.policy.per_task_wei
        if amount > cap:
            shown, shown_cap = _distinct(amount, cap)
            return BudgetDecision(
                False, f"{shown} is above the per-task cap of {shown_cap}: {_ASK}"
            )
        try:
            with self._lock:
                data = self._load()
        except BudgetError as exc:
            return BudgetDecision(False, f"{exc}: {_ASK}")
        day = _utc(now).date().isoformat()
        spent = int(data["days"].get(day, "0"))
        extra = self._extra(data, order)
        day_cap = self.policy.per_day_wei
        if spent + extra > day_cap:
            return BudgetDecision(
                False,
                f"today's cap {format_eth(day_cap)} would be exceeded "
                f"({format_eth(spent)} spent, this task {format_eth(extra)}): {_ASK}",
            )
        if order.task_id in data["tasks"] and extra == 0:
            return BudgetDecision(
                True, f"task {order.task_id} was already approved; it is counted once"
            )
        return BudgetDecision(
            True,
            f"within the auto-approve budget: {format_eth(amount)} "
            f"(today {format_eth(spent + extra)} of {format_eth(day_cap)})",
        )

    def record(self, order: TaskOrder, *, now: datetime | None = None) -> None:
        """Count ``order`` as approved today; a task already recorded counts only its increase.

        Raises
        ------
        BudgetError
            If the ledger file cannot be read or written.
        """
        moment = _utc(now)
        day = moment.date().isoformat()
        with self._lock:
            data = self._load()
            extra = self._extra(data, order)
            previous = int(data["tasks"].get(order.task_id, {}).get("wei", "0"))
            data["days"][day] = str(int(data["days"].get(day, "0")) + extra)
            data["tasks"][order.task_id] = {
                "wei": str(max(previous, order.total_wei)),
                "day": day,
            }
            self._prune(data, moment.date())
            self._save(data)

    def spent_today(self, *, now: datetime | None = None) -> int:
        """Wei committed by orders recorded on the current UTC day.

        Raises
        ------
        BudgetError
            If the ledger file cannot be read.
        """
        with self._lock:
            data = self._load()
        return int(data["days"].get(_utc(now).date().isoformat(), "0"))

    @staticmethod
    def _extra(data: dict[str, Any], order: TaskOrder) -> int:
        previous = int(data["tasks"].get(order.task_id, {}).get("wei", "0"))
        return max(0, order.total_wei - previous)

    @staticmethod
    def _prune(data: dict[str, Any], today: date) -> None:
        oldest = (today - timedelta(days=_KEEP_DAYS)).isoformat()
        data["days"] = {d: v for d, v in data["days"].items() if d >= oldest}
        data["tasks"] = {t: v for t, v in data["tasks"].items() if v["day"] >= oldest}

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"version": 1, "days": {}, "tasks": {}}
        except OSError as exc:
            raise BudgetError(f"the budget ledger {self.path} cannot be read ({exc})") from exc
        try:
            data = json.loads(text)
            days, tasks = data["days"], data["tasks"]
            for value in days.values():
                int(value)
            for entry in tasks.values():
                int(entry["wei"])
                entry["day"].encode()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BudgetError(f"the budget ledger {self.path} is damaged ({exc!r})") from exc
        if not isinstance(data, dict) or not isinstance(days, dict) or not isinstance(tasks, dict):
            raise BudgetError(f"the budget ledger {self.path} is damaged")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            raise BudgetError(f"the budget ledger {self.path} cannot be written ({exc})") from exc
