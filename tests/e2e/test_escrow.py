"""A paid cell on the devnet, end to end: a real kernel, coordinator, providers, signer and anvil.

The devnet's signer approves the notebook user's task within its budget; the
provider stakes, runs the cell and commits; the coordinator's keeper
finalizes after the challenge window; everyone withdraws. The test then
checks the three balances (submitter, provider, contract) to the wei, gas
included.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market, dev_accounts

from .._devnet import Devnet
from ._kernel import Kernel


def _paid_tasks(devnet: Devnet) -> list[dict[str, Any]]:
    listed = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 1000}, headers=devnet.auth())
    return [t for t in listed.json() if t.get("payment")]


def _quiet(devnet: Devnet, market: Market, accounts: list[str], timeout: float = 60) -> None:
    """Wait until no escrow is moving: every funded task settled, every credit withdrawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        moving = [
            t["id"]
            for t in _paid_tasks(devnet)
            if t["payment"]["funded"] and t["payment"]["outcome"] is None
        ]
        credits = [int(market.call("credits", a)) for a in accounts]
        if not moving and not any(credits):
            return
        time.sleep(0.2)
    raise AssertionError(f"escrow still moving: tasks {moving}, credits {credits}")


def _gas_paid(w3: Web3, address: str, first: int, last: int) -> int:
    total = 0
    for number in range(first, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            if str(tx["from"]).lower() == address.lower():
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                total += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    return total


def test_a_paid_cell_pays_the_provider_refunds_the_rest_and_every_wei_adds_up(
    kernel: Kernel, devnet: Devnet
) -> None:
    info = httpx.get(f"{devnet.url}/v1/chain").json()
    w3 = Web3(HTTPProvider(info["rpc_url"]))
    market = Market(w3=w3, address=info["market"])
    user = dev_accounts(1)[0].address
    providers = [p["address"] for p in httpx.get(f"{devnet.url}/v1/providers").json()]
    _quiet(devnet, market, [user, *providers])
    start = int(w3.eth.block_number)
    before = {a: w3.eth.get_balance(a) for a in (user, market.address, *providers)}

    run = kernel.run(
        "%%gensyn_train -o paid\n"
        "model = torch.nn.Linear(4, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step in range(20):\n"
        "    loss = model(torch.ones(8, 4)).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
    )
    assert run.status == "ok", run.text
    shown = kernel.run(
        "print(paid.status)\n"
        "print(' '.join(t.kind for t in paid.transactions))\n"
        "print(paid.payment.provider_address, paid.payment.provider_paid_wei, "
        "paid.payment.refunded_wei, paid.payment.order.total_wei)\n"
    )
    status, kinds, amounts = shown.stdout.strip().splitlines()
    assert status == "settled"
    assert kinds.split()[:2] == ["fund", "assign"]
    assert "commit" in kinds.split() and kinds.split()[-1] == "finalize"
    provider, paid_wei, refunded_wei, total_wei = amounts.split()
    paid, refunded, total = int(paid_wei), int(refunded_wei), int(total_wei)
    assert paid > 0 and paid + refunded == total

    _quiet(devnet, market, [user, *providers])
    end = int(w3.eth.block_number)
    after = {a: w3.eth.get_balance(a) for a in before}
    assert after[user] - before[user] == -paid - _gas_paid(w3, user, start + 1, end)
    assert after[provider] - before[provider] == paid - _gas_paid(w3, provider, start + 1, end)
    assert after[market.address] == before[market.address]  # escrow in, all of it out again
    counters = ("totalEscrow", "totalStake", "totalBonds", "totalCredits")
    assert after[market.address] == sum(int(market.call(name)) for name in counters)

    # What went on chain as the checkpoint root is the Merkle root of the run's leaves.
    task_id = kernel.run("print(paid.task_id)").stdout.strip()
    task = httpx.get(f"{devnet.url}/v1/tasks/{task_id}", headers=devnet.auth()).json()
    commitment = task["result"]["commitment"]
    key = bytes.fromhex(task["payment"]["task_key"][2:])
    committed = [
        e for e in market.events(from_block=start + 1, task_id=key) if e.name == "TaskCommitted"
    ]
    assert len(committed) == 1 and len(commitment["leaves"]) >= 2
    assert "0x" + committed[0].args["checkpointRoot"].hex() == commitment["root"]
