"""Approving and rejecting paid tasks from the server, by hand and within a budget.

A real Jupyter server with the extension, a real coordinator with escrow on a
real dev chain (anvil). Tasks are submitted as a kernel does: with the session
token the wallet stored when it was unlocked.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from eth_account import Account

from gensyn_jupyter.chain import TaskStatus, format_eth, start_devchain
from gensyn_jupyter.config import read_session_token
from gensyn_jupyter.protocol import task_key

from .server_helpers import Api, Coordinator, PaidNetwork, key_of, paid_network_on

PASS = "correct horse battery"
RATE = 10**12  # the coordinator's default price of a GPU-second, in wei


async def _unlock(api: Api, key: str, *, faucet: bool = False) -> str:
    """Import and unlock ``key`` (signing in); with ``faucet``, fund it with devnet coins."""
    status, body = await api(
        "wallet", "import", method="POST", body={"private_key": key, "passphrase": PASS}
    )
    assert status == 201, body
    address = str(body["address"])
    status, state = await api(
        "wallet", "unlock", method="POST", body={"address": address, "passphrase": PASS}
    )
    assert status == 200 and state["session"] is True, state
    if faucet:
        status, body = await api("faucet", method="POST")
        assert status == 200, body
    return address


def _submit(coordinator: Coordinator, network: str, **spec: Any) -> dict[str, Any]:
    """A task submitted with the stored session, as ``%%gensyn_train`` does."""
    token = read_session_token(network)
    assert token is not None, "unlock should have stored a session for the kernel"
    return coordinator.submit_as(token, **spec)


async def _eventually(check: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_approvals_need_an_unlocked_account(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    status, body = await gensyn_api("approvals")
    assert status == 409 and body["field"] == "account"
    assert "no account is unlocked" in body["detail"] and "wallet/unlock" in body["detail"]


async def test_approve_funds_the_escrow_and_queues_the_task(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    market = paid_network.market
    user = paid_network.chain.accounts[0]  # the notebook user of a devnet
    await _unlock(gensyn_api, key_of(user))
    task = _submit(paid_coordinator, paid_network.url, max_seconds=120, gpus=2, label="mnist")
    order = task["payment"]["order"]
    total = order["max_price_wei"] + order["verifier_fee_wei"]
    assert order["max_price_wei"] == RATE * 2 * 120

    status, waiting = await gensyn_api("approvals")
    assert status == 200
    (item,) = [w for w in waiting if w["task_id"] == task["id"]]
    deadline = datetime.fromtimestamp(order["deadline"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert item["order"] == order and item["label"] == "mnist"
    assert (item["max_price"], item["total"]) == (format_eth(RATE * 240), format_eth(total))
    assert (item["gpus"], item["verify"], item["deadline"]) == (2, "none", deadline)
    assert item["bundle"] == task["spec"]["bundle"]
    assert format_eth(total) in item["summary"] and "2 GPUs" in item["summary"]
    assert item["auto_approve"]["allowed"] is False
    assert "auto-approve is off" in item["auto_approve"]["reason"]

    before = market.w3.eth.get_balance(market.address)
    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 200, body
    assert body["id"] == task["id"] and body["state"] == "queued"
    assert body["payment"]["signed"] and body["payment"]["funded"]
    assert paid_coordinator.task(task["id"])["state"] == "queued"
    escrow = market.task(task_key(task["id"]))
    assert escrow.status == TaskStatus.OPEN and escrow.submitter == user.address
    assert escrow.max_payment + escrow.verifier_fee == total
    assert market.w3.eth.get_balance(market.address) - before == total

    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 409 and f"task {task['id']} is queued, not awaiting approval" in body["detail"]
    assert market.w3.eth.get_balance(market.address) - before == total  # not funded twice
    status, waiting = await gensyn_api("approvals")
    assert task["id"] not in [w["task_id"] for w in waiting]


async def test_a_locked_key_cannot_approve_and_says_how_to_unlock(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    address = await _unlock(gensyn_api, key_of(Account.create()), faucet=True)
    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    status, _ = await gensyn_api("wallet", "lock", method="POST")
    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 409
    assert body["detail"].startswith(f"{address} is locked: unlock it in the Gensyn panel")
    assert "/gensyn/api/wallet/unlock" in body["detail"]
    assert paid_coordinator.task(task["id"])["state"] == "awaiting_approval"
    # still listed for that account while locked, so the panel can ask to unlock
    status, waiting = await gensyn_api("approvals", params={"account": address})
    assert status == 200 and [w["task_id"] for w in waiting] == [task["id"]]


async def test_an_empty_account_gets_402_with_the_amounts_then_the_faucet_helps(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    address = await _unlock(gensyn_api, key_of(Account.create()))
    task = _submit(paid_coordinator, paid_network.url, max_seconds=50)
    total = task["payment"]["order"]["max_price_wei"] + task["payment"]["order"]["verifier_fee_wei"]
    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 402
    assert body["detail"].startswith(f"{address} holds 0 ETH (0 wei); this order needs ")
    assert f"{format_eth(total)} ({total} wei) in escrow plus gas" in body["detail"]
    assert paid_coordinator.task(task["id"])["state"] == "awaiting_approval"
    # exactly the escrow, nothing for gas: the node refuses, and the answer says why
    w3 = paid_network.market.w3
    w3.provider.make_request("anvil_setBalance", [address, hex(total)])  # type: ignore[arg-type]
    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 402, body
    assert f"{address} holds {format_eth(total)} ({total} wei)" in body["detail"]

    status, _ = await gensyn_api("faucet", method="POST")
    assert status == 200
    status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
    assert status == 200 and body["state"] == "queued"


async def test_reject_cancels_the_task_and_it_cannot_be_approved_after(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    await _unlock(gensyn_api, key_of(Account.create()), faucet=True)
    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    status, body = await gensyn_api("approvals", task["id"], "reject", method="POST")
    assert status == 200 and body["id"] == task["id"] and body["state"] == "cancelled"
    assert paid_coordinator.task(task["id"])["state"] == "cancelled"
    for action in ("reject", "approve"):
        status, body = await gensyn_api("approvals", task["id"], action, method="POST")
        assert status == 409, (action, body)
        assert f"task {task['id']} is cancelled, not awaiting approval" in body["detail"]
    assert paid_network.market.task(task_key(task["id"])).status == TaskStatus.NONE


async def test_unknown_tasks_are_404(gensyn_api: Api, paid_network: PaidNetwork) -> None:
    for task_id in ("no-such-task", "a.b"):
        status, body = await gensyn_api("approvals", task_id, "approve", method="POST")
        assert status == 404 and body["detail"], body
    status, body = await gensyn_api("approvals", "t-1", "approve", method="POST", body={"x": 1})
    assert status == 422 and body["field"] == "x"


async def test_a_refusal_by_the_contract_is_409_in_its_words(
    gensyn_api: Api, monkeypatch: Any, tmp_path: pathlib.Path
) -> None:
    """A chain whose clock is past the task's deadline: createTask reverts."""
    with start_devchain() as chain, paid_network_on(chain, tmp_path) as paid:
        monkeypatch.setenv("GENSYN_NETWORK", paid.url)
        await _unlock(gensyn_api, key_of(chain.accounts[0]))
        with httpx.Client(base_url=paid.url, timeout=10) as http:
            coordinator = Coordinator(http)
            task = _submit(coordinator, paid.url, max_seconds=1)
            w3 = paid.market.w3
            w3.provider.make_request("evm_increaseTime", [3600])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            status, body = await gensyn_api("approvals", task["id"], "approve", method="POST")
            assert status == 409, body
            assert body["detail"].startswith("TaskMarket refused: DeadlinePassed(")
            assert coordinator.task(task["id"])["state"] == "awaiting_approval"


async def test_the_budget_approves_small_tasks_by_itself_and_leaves_big_ones_to_a_person(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    await _unlock(gensyn_api, key_of(Account.create()), faucet=True)
    status, body = await gensyn_api(
        "budget",
        method="PUT",
        body={"enabled": True, "per_task_eth": "0.001", "per_day_eth": "0.01"},
    )
    assert status == 200, body
    small = _submit(paid_coordinator, paid_network.url, max_seconds=100)  # 0.0001 ETH
    big = _submit(paid_coordinator, paid_network.url, max_seconds=100_000)  # 0.1 ETH
    started = time.monotonic()
    await _eventually(lambda: paid_coordinator.task(small["id"])["state"] == "queued", 5.0)
    assert time.monotonic() - started < 5.0
    await asyncio.sleep(1.0)  # two more rounds of the loop
    assert paid_coordinator.task(big["id"])["state"] == "awaiting_approval"
    escrow = paid_network.market.task(task_key(small["id"]))
    assert escrow.status == TaskStatus.OPEN

    status, waiting = await gensyn_api("approvals")
    (item,) = waiting
    assert item["task_id"] == big["id"] and item["auto_approve"]["allowed"] is False
    assert "above the per-task cap of 0.001 ETH" in item["auto_approve"]["reason"]
    status, budget = await gensyn_api("budget")
    small_total = small["payment"]["order"]["max_price_wei"]
    assert budget["spent_today_wei"] == small_total == RATE * 100

    status, body = await gensyn_api("approvals", big["id"], "approve", method="POST")
    assert status == 200 and body["state"] == "queued"  # a person may go over the budget
    assert paid_network.market.task(task_key(big["id"])).max_payment == RATE * 100_000
