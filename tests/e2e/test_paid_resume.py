"""A paid run whose provider hangs: handed over on chain, resumed, each provider paid its share.

A devnet of its own (anvil, the market, a coordinator with a 3 s lease ttl,
two staked providers, the referee and the user's signer), a real kernel and
a paid cell that checkpoints every 5 steps. Once a signed checkpoint is on
the coordinator, the provider running the cell is frozen (SIGSTOP: a machine
that stops answering). The cell says the provider was lost and where the run
resumed; on chain the task was handed over with the lost provider's signed
claim (``TaskMarket.reassign``); at settlement the lost provider is paid
exactly that claim, the next one what it committed, the submitter gets the
rest, and the provider that comes back cannot commit a second time.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market

from .._devnet import Devnet, detached_devnet
from ._faults import provider_process
from ._kernel import Kernel, started_kernel

SETUP = """\
torch.manual_seed(0)
X = torch.randn(256, 8)
Y = X.sum(1, keepdim=True)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
"""

CELL = """\
%%gensyn_train --checkpoint-every 5 -o paid
import time
for step in range(60):
    i = torch.randint(0, len(X), (32,))
    loss = torch.nn.functional.mse_loss(model(X[i]), Y[i])
    opt.zero_grad(); loss.backward(); opt.step()
    time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def paid_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    home = tmp_path_factory.mktemp("gensyn-paid-resume")
    with detached_devnet(home, "--providers", "2", "--lease-ttl", "3") as net:
        yield net


@pytest.fixture(scope="module")
def paid_kernel(paid_net: Devnet) -> Iterator[Kernel]:
    with started_kernel(paid_net.env()) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch\n" + SETUP)
        assert setup.status == "ok", setup.text
        yield k


def _owner(net: Devnet) -> httpx.Client:
    """The notebook user's view of the coordinator (its session, as the kernel signed in)."""
    deadline = time.monotonic() + 60
    while not (auth := net.auth()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel signs in when it submits
    assert auth, "the kernel's session was not stored within 60 s"
    return httpx.Client(base_url=net.url, headers=auth, timeout=10)


def _signed_checkpoint(
    owner: httpx.Client, after_step: int, timeout: float = 120
) -> dict[str, Any]:
    """The running paid task once the coordinator holds a checkpoint past ``after_step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = owner.get("/v1/tasks", params={"state": "running"}).json()
        for task in running:
            if task.get("payment") and (task.get("checkpoint_step") or 0) >= after_step:
                return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"no running paid task had a checkpoint past step {after_step}")


@pytest.mark.timeout(400)
def test_a_hung_provider_s_paid_run_is_handed_over_and_each_provider_paid_its_share(
    paid_kernel: Kernel, paid_net: Devnet
) -> None:
    kernel, url = paid_kernel, paid_net.url
    chain = httpx.get(f"{url}/v1/chain", timeout=10).json()
    market = Market(w3=Web3(HTTPProvider(chain["rpc_url"])), address=chain["market"])
    start = int(market.w3.eth.block_number)

    msg_id = kernel.start(CELL)
    owner = _owner(paid_net)
    task = _signed_checkpoint(owner, after_step=10)
    lost = task["provider_name"]
    lost_address = task["payment"]["provider_address"]
    victim = provider_process(lost, url)
    os.kill(victim.pid, signal.SIGSTOP)  # hung: no heartbeat, no answer
    try:
        run = kernel.read_until(msg_id, lambda run: False, timeout=240)
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    assert run.error == [], run.text
    said = re.search(rf"provider {lost} lost, resumed from step (\d+) on provider (\S+)", run.text)
    assert said is not None, run.text
    step, successor = int(said.group(1)), said.group(2)
    assert successor != lost and 10 <= step < 60
    assert re.search(r"providers paid [\d.]+ ETH \([\d.]+ ETH of it for the checkpointed", run.text)

    final = owner.get(f"/v1/tasks/{task['id']}").json()
    assert final["state"] == "settled" and final["attempt"] == 2, final
    payment = final["payment"]
    [handover] = payment["handovers"]
    assert handover["provider_address"] == lost_address and handover["step"] == step
    claimed = handover["amount_wei"]
    assert claimed > 0
    kinds = [t["kind"] for t in payment["transactions"]]
    assert kinds[:3] == ["fund", "assign", "reassign"] and kinds[-1] == "finalize", kinds

    # On chain: handed over on the lost provider's own claim, one commit, paid once each.
    key = bytes.fromhex(payment["task_key"][2:])
    events = {e.name: e.args for e in market.events(from_block=start + 1, task_id=key)}
    names = [e.name for e in market.events(from_block=start + 1, task_id=key)]
    assert names.count("TaskReassigned") == 1 and names.count("TaskCommitted") == 1, names
    assert names.count("TaskFinalized") == 1, names
    moved = events["TaskReassigned"]
    assert (moved["from"], moved["step"], moved["paidFrom"]) == (lost_address, step, claimed)
    committed = events["TaskCommitted"]
    assert committed["provider"] == payment["provider_address"] != lost_address
    second = int(committed["amountDue"])
    finalized = events["TaskFinalized"]
    total = payment["order"]["max_price_wei"] + payment["order"]["verifier_fee_wei"]
    assert finalized["paidProviders"] == claimed + second == payment["provider_paid_wei"]
    assert finalized["refund"] == total - claimed - second - finalized["paidVerifier"]
    assert claimed + second <= payment["order"]["max_price_wei"]
    market_task = market.task(key)
    assert market_task.provider == payment["provider_address"]

    # The provider that comes back finds its lease gone: nothing more is committed or paid.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = httpx.get(f"{url}/v1/providers", timeout=10).json()
        if any(p["info"]["name"] == lost and p["state"] != "offline" for p in listed):
            break
        time.sleep(0.5)
    time.sleep(2)
    names = [e.name for e in market.events(from_block=start + 1, task_id=key)]
    assert names.count("TaskCommitted") == 1 and names.count("TaskFinalized") == 1, names
