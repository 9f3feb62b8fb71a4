"""The class service's parts without a Hub: keys, the spend ledger, the reworded event, imports."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from gensyn_jupyter.hub import ClassLedger, GensynClass, StudentKeys
from gensyn_jupyter.hub._events import class_message, reword_sse
from gensyn_jupyter.hub._keys import user_file_name
from gensyn_jupyter.protocol import TaskOrder, VerifyMode

from ..test_layout import FORBIDDEN, PACKAGE, _imports_of

_ETH = 10**18
_ADDRESS = "0x" + "ab" * 20


def _order(task_id: str, wei: int) -> TaskOrder:
    return TaskOrder(
        task_id=task_id,
        spec_hash="00" * 32,
        max_price_wei=wei,
        verifier_fee_wei=0,
        verify=VerifyMode.NONE,
        deadline=2_000_000_000,
        nonce=1,
        chain_id=31337,
        contract=_ADDRESS,
        submitter=_ADDRESS,
    )


def test_a_students_key_is_made_once_readable_only_by_the_service(tmp_path: Path) -> None:
    keys = StudentKeys(tmp_path / "keys")
    assert keys.address("alice") is None
    first = keys.account("alice")
    again = StudentKeys(tmp_path / "keys").account("alice")
    assert first.address == again.address != keys.account("bob").address
    path = tmp_path / "keys" / user_file_name("alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert keys.users() == ["alice", "bob"]


def test_user_names_cannot_collide_or_climb_out_of_the_key_folder() -> None:
    names = ["..", "../x", "a/b", "a%2Fb", "A", "a", "é"]
    files = [user_file_name(n) for n in names]
    assert len(set(files)) == len(names)
    assert all("/" not in f and not f.startswith(".") for f in files)
    with pytest.raises(ValueError):
        user_file_name("")


def test_a_damaged_key_file_is_reported_without_its_content(tmp_path: Path) -> None:
    keys = StudentKeys(tmp_path)
    keys.account("alice")
    path = tmp_path / user_file_name("alice")
    body = json.loads(path.read_text())
    body["key"] = body["key"][:-4]
    path.write_text(json.dumps(body))
    with pytest.raises(RuntimeError) as caught:
        StudentKeys(tmp_path).account("alice")
    assert body["key"][2:20] not in str(caught.value)


def test_the_budget_holds_escrow_until_settled_then_counts_what_was_paid(tmp_path: Path) -> None:
    ledger = ClassLedger(tmp_path / "ledger.json")
    budget = 5 * 10**14
    first = _order("t-1", 12 * 10**13)
    assert ledger.decide("bob", first, budget_wei=budget).approved
    ledger.hold("bob", first)
    ledger.hold("bob", first)  # counted once
    assert ledger.spend("bob", budget).held_wei == 12 * 10**13
    big = _order("t-2", 36 * 10**14)
    refused = ledger.decide("bob", big, budget_wei=budget)
    assert not refused.approved
    assert refused.reason == (
        "over your class budget: this task may cost up to 0.0036 ETH, but only 0.00038 ETH is "
        "left of your budget of 0.0005 ETH (0 ETH spent, 0.00012 ETH held for unfinished "
        "tasks); ask your instructor for a larger budget, or lower --max-seconds"
    )
    ledger.settle("bob", "t-1", 3 * 10**11)
    spend = ClassLedger(tmp_path / "ledger.json").spend("bob", budget)
    assert (spend.spent_wei, spend.held_wei, spend.left_wei) == (3 * 10**11, 0, budget - 3 * 10**11)
    assert ledger.spend("alice", budget).left_wei == budget  # budgets are per student


def test_a_failed_approval_gives_its_hold_back_and_the_per_task_cap_is_named(
    tmp_path: Path,
) -> None:
    ledger = ClassLedger(tmp_path / "ledger.json")
    order = _order("t-1", _ETH // 10)
    ledger.hold("alice", order)
    ledger.release("alice", "t-1")
    assert ledger.spend("alice", _ETH).held_wei == 0
    capped = ledger.decide("alice", order, budget_wei=_ETH, per_task_wei=_ETH // 100)
    assert not capped.approved
    assert "above the class's per-task limit of 0.01 ETH" in capped.reason


def test_budget_overrides_and_the_data_folder(tmp_path: Path) -> None:
    settings = GensynClass(budget_wei=7, budget_overrides={"bob": 3})
    assert (settings.budget_for("alice"), settings.budget_for("bob")) == (7, 3)
    config = tmp_path / "jupyterhub_config.py"
    assert settings.resolved_data_dir(str(config)) == tmp_path / "gensyn-class"
    with pytest.raises(Exception, match="non-negative"):
        GensynClass(budget_wei=-1)


def test_the_awaiting_approval_event_tells_a_student_the_class_service_approves() -> None:
    task = {"payment": {"order": {"max_price_wei": 12 * 10**13, "submitter": _ADDRESS}}}
    awaiting = {"kind": "state", "data": {"state": "awaiting_approval", "message": "sign it"}}
    other = {"kind": "state", "data": {"state": "queued", "message": "queued"}}
    lines = [
        "id: 1",
        "event: state",
        "data: " + json.dumps(awaiting),
        "",
        "data: " + json.dumps(other),
        "",
    ]

    async def source() -> AsyncIterator[str]:
        for line in lines:
            yield line

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in reword_sse(source(), class_message(task))])

    text = anyio.run(collect).decode()
    assert text.count("\n") == len(lines)
    assert "sign it" not in text
    assert "awaiting approval by the class service: at most 0.00012 ETH" in text
    assert json.dumps(other) in text


def test_the_class_service_reaches_the_coordinator_only_over_http() -> None:
    forbidden = FORBIDDEN["server"] | {"server"}
    offenders = [
        f"{path.name} imports {sorted(found)}"
        for path in sorted((PACKAGE / "hub").rglob("*.py"))
        if (found := _imports_of(path) & forbidden)
    ]
    assert not offenders


def test_the_documented_config_is_the_example_file_the_hub_test_runs() -> None:
    repo = PACKAGE.parent
    doc = (repo / "docs" / "jupyterhub.md").read_text()
    blocks = [part.split("```\n", 1)[0] for part in doc.split("```python\n")[1:]]
    example = (repo / "examples" / "jupyterhub_config.py").read_text()
    assert example in blocks, "docs/jupyterhub.md must show examples/jupyterhub_config.py as is"
