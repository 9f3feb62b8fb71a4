"""The auto-approve budget: what is signed without asking, and why the rest is not."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gensyn_jupyter.chain._budget import (
    BudgetError,
    BudgetLedger,
    BudgetPolicy,
    format_eth,
)
from gensyn_jupyter.protocol import TaskOrder

ETH = 10**18
SUBMITTER = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NOON = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


def _order(task_id: str, wei: int, fee: int = 0) -> TaskOrder:
    return TaskOrder(
        task_id=task_id,
        spec_hash="cd" * 32,
        max_price_wei=wei,
        verifier_fee_wei=fee,
        deadline=1_900_000_000,
        nonce=1,
        chain_id=31337,
        contract=MARKET,
        submitter=SUBMITTER,
    )


def _ledger(tmp_path: Path, policy: BudgetPolicy | None = None) -> BudgetLedger:
    return BudgetLedger(path=tmp_path / "budget.json", policy=policy or BudgetPolicy.devnet())


@pytest.mark.parametrize(
    ("wei", "text"),
    [
        (0, "0 ETH"),
        (1, "0.000000000000000001 ETH"),
        (1_200_000_000_000_000, "0.0012 ETH"),
        (ETH, "1 ETH"),
        (ETH // 2, "0.5 ETH"),
        (95 * ETH // 100, "0.95 ETH"),
        (1_234_567_890_000_000_000, "1.23457 ETH"),
        (10 * ETH, "10 ETH"),
        (1_234_567 * ETH + 1, "1234567 ETH"),
    ],
)
def test_amounts_read_in_eth_with_six_significant_digits(wei: int, text: str) -> None:
    assert format_eth(wei) == text


def test_the_devnet_policy_approves_a_task_within_its_caps(tmp_path: Path) -> None:
    policy = BudgetPolicy.devnet()
    assert (policy.enabled, policy.per_task_wei, policy.per_day_wei) == (True, ETH, 10 * ETH)
    decision = _ledger(tmp_path).decide(_order("t1", ETH // 2), now=NOON)
    assert decision.approved
    assert "0.5 ETH" in decision.reason


def test_with_auto_approve_off_every_task_is_asked(tmp_path: Path) -> None:
    decision = _ledger(tmp_path, BudgetPolicy.off()).decide(_order("t1", 1), now=NOON)
    assert not decision.approved
    assert decision.reason == "auto-approve is off: approve this task in the Gensyn panel"


def test_a_task_above_the_per_task_cap_is_asked(tmp_path: Path) -> None:
    policy = BudgetPolicy(enabled=True, per_task_wei=ETH // 10, per_day_wei=ETH)
    decision = _ledger(tmp_path, policy).decide(_order("t1", 4 * ETH // 10, ETH // 10), now=NOON)
    assert not decision.approved
    assert decision.reason.startswith("0.5 ETH is above the per-task cap of 0.1 ETH")
    assert "Gensyn panel" in decision.reason


def test_a_task_one_wei_above_the_cap_does_not_read_as_equal_to_it(tmp_path: Path) -> None:
    policy = BudgetPolicy(enabled=True, per_task_wei=ETH // 10, per_day_wei=ETH)
    decision = _ledger(tmp_path, policy).decide(_order("t1", ETH // 10 + 1), now=NOON)
    assert not decision.approved
    assert decision.reason.startswith(
        "0.100000000000000001 ETH is above the per-task cap of 0.1 ETH"
    )


def test_the_daily_cap_counts_what_was_approved_today(tmp_path: Path) -> None:
    policy = BudgetPolicy(enabled=True, per_task_wei=ETH, per_day_wei=ETH)
    ledger = _ledger(tmp_path, policy)
    ledger.record(_order("t1", 50 * ETH // 100), now=NOON)
    ledger.record(_order("t2", 40 * ETH // 100, 5 * ETH // 100), now=NOON)
    assert ledger.spent_today(now=NOON) == 95 * ETH // 100
    assert ledger.decide(_order("t3", 5 * ETH // 100), now=NOON).approved
    decision = ledger.decide(_order("t3", ETH // 10), now=NOON)
    assert not decision.approved
    assert decision.reason.startswith("today's cap 1 ETH would be exceeded (0.95 ETH spent")


def test_the_same_task_is_never_counted_twice(tmp_path: Path) -> None:
    policy = BudgetPolicy(enabled=True, per_task_wei=ETH, per_day_wei=ETH)
    ledger = _ledger(tmp_path, policy)
    ledger.record(_order("t1", 8 * ETH // 10), now=NOON)
    again = ledger.decide(_order("t1", 8 * ETH // 10), now=NOON)
    assert again.approved, again.reason
    ledger.record(_order("t1", 8 * ETH // 10), now=NOON)
    assert ledger.spent_today(now=NOON) == 8 * ETH // 10
    # Re-signed for more: only the increase counts.
    ledger.record(_order("t1", 9 * ETH // 10), now=NOON)
    assert ledger.spent_today(now=NOON) == 9 * ETH // 10


def test_the_daily_budget_resets_at_utc_midnight(tmp_path: Path) -> None:
    policy = BudgetPolicy(enabled=True, per_task_wei=ETH, per_day_wei=ETH)
    ledger = _ledger(tmp_path, policy)
    before_midnight = datetime(2030, 5, 17, 23, 59, 30, tzinfo=UTC)
    ledger.record(_order("t1", ETH), now=before_midnight)
    assert not ledger.decide(_order("t2", 1), now=before_midnight).approved
    after_midnight = before_midnight + timedelta(minutes=1)
    assert ledger.spent_today(now=after_midnight) == 0
    assert ledger.decide(_order("t2", ETH), now=after_midnight).approved
    # 21:30 at UTC-03:00 is already 00:30 UTC of the next day.
    west = datetime(2030, 5, 17, 21, 30, tzinfo=timezone(timedelta(hours=-3)))
    assert ledger.spent_today(now=west) == 0
    # A naive time is read as UTC.
    assert ledger.spent_today(now=datetime(2030, 5, 17, 23, 0)) == ETH


def test_the_ledger_survives_a_restart_as_a_private_json_file(tmp_path: Path) -> None:
    _ledger(tmp_path).record(_order("t1", 3 * ETH), now=NOON)
    path = tmp_path / "budget.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["days"] == {"2030-05-17": str(3 * ETH)}
    assert data["tasks"] == {"t1": {"day": "2030-05-17", "wei": str(3 * ETH)}}
    assert _ledger(tmp_path).spent_today(now=NOON) == 3 * ETH
    assert [p.name for p in tmp_path.iterdir()] == ["budget.json"]  # no temporary left behind


def test_old_days_are_forgotten(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.record(_order("old", ETH), now=NOON - timedelta(days=200))
    ledger.record(_order("new", ETH), now=NOON)
    data = json.loads((tmp_path / "budget.json").read_text())
    assert list(data["days"]) == ["2030-05-17"] and list(data["tasks"]) == ["new"]


def test_a_damaged_ledger_approves_nothing_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.write_text('{"days": [1, 2]}')
    ledger = _ledger(tmp_path)
    decision = ledger.decide(_order("t1", 1), now=NOON)
    assert not decision.approved
    assert f"the budget ledger {path} is damaged" in decision.reason
    with pytest.raises(BudgetError, match="is damaged"):
        ledger.record(_order("t1", 1), now=NOON)
    assert path.read_text() == '{"days": [1, 2]}'


def test_a_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        BudgetPolicy(enabled=True, per_task_wei=-1, per_day_wei=0)
