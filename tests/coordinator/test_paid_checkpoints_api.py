"""A paid run's checkpoints carry its provider's signed claim; a lost run is handed over on it.

A coordinator with escrow on a real anvil (the app and its lifespan through
Starlette's TestClient, 1 s lease ttl). The provider of a paid task posts
checkpoints: without a claim, with a claim signed by another key, or asking
more than its seconds earned are refused with what is wrong; a good one is
kept. When the provider goes silent, the next staked provider's lease
resumes from that checkpoint and the task is handed over to it on chain with
the lost provider's claim.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import (
    Devchain,
    Market,
    MarketConfig,
    approve_task,
    progress_hash,
    sign_in,
    sign_progress,
    start_anvil,
)
from gensyn_jupyter.coordinator import ChainConfig, create_app
from gensyn_jupyter.protocol import Task, task_key

from .coordinator_helpers import bundle_bytes, sha

ETH = 10**18
RATE = 10**12
LEAF = "0x" + "22" * 32


@pytest.fixture(scope="module")
def chain() -> Iterator[Devchain]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def market(chain: Devchain) -> Market:
    acc = chain.accounts
    config = MarketConfig(
        operator=acc[1].address, referee=acc[8].address, treasury=acc[9].address,
        min_stake=ETH, min_bond=ETH // 10, unbonding_delay=60, challenge_window=1,
    )  # fmt: skip
    return Market.deploy(w3=Web3(HTTPProvider(chain.rpc_url)), deployer=acc[0], config=config)


@pytest.fixture
def client(tmp_path: Path, chain: Devchain, market: Market) -> Iterator[TestClient]:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
        blob_dir=tmp_path / "blobs",
        lease_ttl_seconds=1.0,
        heartbeat_seconds=0.3,
        chain=ChainConfig(
            rpc_url=chain.rpc_url,
            market=market.address,
            operator_key="0x" + bytes(chain.accounts[1].key).hex(),
            rate_wei_per_gpu_second=RATE,
            poll_seconds=0.05,
            from_block=int(market.w3.eth.block_number),
        ),
    )
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield http


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _provider(client: TestClient, market: Market, account: LocalAccount, name: str) -> Any:
    market.transact(account, "stake", value=ETH)
    info = {"name": name, "device_type": "cpu", "cpu_count": 2, "python": "3.11.7",
            "torch": "2.13.0"}  # fmt: skip
    reg = client.post("/v1/providers", json=info, headers=_bearer(sign_in(client, account).token))
    assert reg.status_code == 201, reg.text
    return reg.json()["provider"]["id"], _bearer(reg.json()["token"])


def _checkpoint(client: TestClient, step: int, claim: dict[str, Any] | None) -> dict[str, Any]:
    shas = []
    for part in ("meta", "tensors"):
        data = f"{part} of step {step}".encode()
        assert client.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
        shas.append(sha(data))
    leaves = [
        {"step": 0, "kind": "start", "leaf": "0x" + "11" * 32, "resumable": True},
        {"step": step, "kind": "boundary", "leaf": LEAF, "resumable": True},
    ]
    blob = {"leaf": 1, "step": step, "kind": "boundary", "meta": shas[0], "tensors": shas[1]}
    return {"leaf": 1, "step": step, "leaves": leaves, "dues": [0, step], "every": 5,
            "next_due": step + 5, "blobs": [blob], "claim": claim}  # fmt: skip


def _claim(market: Market, account: LocalAccount, task: Task, step: int, amount: int) -> Any:
    digest = progress_hash(
        chain_id=int(market.w3.eth.chain_id), market=market.address,
        task_key=task_key(task.id), step=step, leaf=bytes.fromhex(LEAF[2:]), amount_wei=amount,
    )  # fmt: skip
    return {"amount_wei": amount, "signature": sign_progress(account, digest)}


def test_paid_checkpoints_need_their_provider_s_claim_and_a_lost_run_is_handed_over_on_it(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    user, lost_key, next_key, stranger = (chain.accounts[i] for i in (0, 3, 4, 5))
    owner = _bearer(sign_in(client, user).token)
    lost_id, lost_auth = _provider(client, market, lost_key, "lost")
    data = bundle_bytes()
    assert client.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
    created = client.post("/v1/tasks", json={"bundle": sha(data), "max_seconds": 60}, headers=owner)
    assert created.status_code == 201, created.text
    task = Task.model_validate(created.json())
    client.headers.update(owner)  # the owner's wallet approves and funds
    approve_task(http=client, market=market, account=user, task=task)
    del client.headers["Authorization"]
    lease = client.post(f"/v1/providers/{lost_id}/lease", params={"wait": 5}, headers=lost_auth)
    assert lease.status_code == 200, lease.text
    url = f"/v1/leases/{lease.json()['id']}/checkpoint"

    def post(claim: dict[str, Any] | None) -> Any:
        return client.post(url, json=_checkpoint(client, 10, claim), headers=lost_auth)

    missing = post(None)
    assert missing.status_code == 400 and "signed claim" in missing.json()["detail"]
    forged = post(_claim(market, stranger, task, 10, RATE))
    assert forged.status_code == 400
    assert f"signed by {stranger.address}, not by this provider" in forged.json()["detail"]
    greedy = post(_claim(market, lost_key, task, 10, RATE * 3600))
    assert greedy.status_code == 400 and "earn at most" in greedy.json()["detail"]
    claimed = RATE // 2
    assert post(_claim(market, lost_key, task, 10, claimed)).status_code == 204

    # the lost provider goes silent; the next one resumes from step 10 and the chain follows
    next_id, next_auth = _provider(client, market, next_key, "next")
    deadline = time.monotonic() + 20
    while True:
        again = client.post(f"/v1/providers/{next_id}/lease", params={"wait": 2}, headers=next_auth)
        if again.status_code == 200:
            break
        assert time.monotonic() < deadline, "the lost run was not handed over"
    resumed = again.json()
    assert resumed["resume"]["step"] == 10
    payment = resumed["task"]["payment"]
    assert [t["kind"] for t in payment["transactions"]] == ["fund", "assign", "reassign"]
    assert payment["handovers"] == [
        {"provider_address": lost_key.address, "step": 10, "amount_wei": claimed}
    ]
    assert payment["provider_address"] == next_key.address
    assert payment["price_wei"] == payment["order"]["max_price_wei"] - claimed
    on_chain = market.task(task_key(task.id))
    assert on_chain.provider == next_key.address and on_chain.amount_due == 0
    moved = [e.args for e in market.events(from_block=0, task_id=task_key(task.id))
             if e.name == "TaskReassigned"]  # fmt: skip
    assert [(m["from"], m["to"], m["step"], m["paidFrom"]) for m in moved] == [
        (lost_key.address, next_key.address, 10, claimed)
    ]


def test_a_result_posted_after_the_keeper_settled_its_escrow_still_ends_settled(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    """The keeper may finalize a committed task (1 s window) before its provider posts the
    result; the post must then end the task ``settled``, not leave it ``verified``."""
    user, worker = chain.accounts[0], chain.accounts[3]
    owner = _bearer(sign_in(client, user).token)
    provider_id, auth = _provider(client, market, worker, "late")
    data = bundle_bytes()
    assert client.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
    created = client.post("/v1/tasks", json={"bundle": sha(data), "max_seconds": 60}, headers=owner)
    task = Task.model_validate(created.json())
    client.headers.update(owner)
    approve_task(http=client, market=market, account=user, task=task)
    del client.headers["Authorization"]
    lease = client.post(f"/v1/providers/{provider_id}/lease", params={"wait": 5}, headers=auth)
    assert lease.status_code == 200, lease.text
    digest = b"\x0f" * 32
    receipt = market.transact(worker, "commit", task_key(task.id), digest, digest, RATE)
    deadline = time.monotonic() + 20
    while client.get(f"/v1/tasks/{task.id}", headers=owner).json()["payment"]["outcome"] is None:
        assert time.monotonic() < deadline, "the keeper never finalized the committed task"
        client.post(f"/v1/providers/{provider_id}/heartbeat", headers=auth)  # keep the lease
        time.sleep(0.1)
    posted = client.post(
        f"/v1/leases/{lease.json()['id']}/result",
        json={"duration_s": 1.0, "commit_tx": "0x" + bytes(receipt["transactionHash"]).hex()},
        headers=auth,
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["state"] == "settled", posted.json()
    assert posted.json()["payment"]["provider_paid_wei"] == RATE


def test_a_task_assigned_on_chain_but_not_in_the_database_blocks_no_queue(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    """An assign mined whose database transaction was lost (a replica killed between the
    two): the chain refuses every other provider's assign. Claims pass that task over, so the
    queue behind it moves, and the provider the chain names takes it without a new assign."""
    user, chosen, other = chain.accounts[0], chain.accounts[3], chain.accounts[4]
    owner = _bearer(sign_in(client, user).token)
    chosen_id, chosen_auth = _provider(client, market, chosen, "chosen")
    other_id, other_auth = _provider(client, market, other, "other")
    tasks = []
    for n in range(2):
        data = bundle_bytes().replace(b"loss = 1.0", f"loss = {n}.0".encode())
        assert client.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
        reply = client.post("/v1/tasks", json={"bundle": sha(data), "max_seconds": 60},
                            headers=owner)  # fmt: skip
        assert reply.status_code == 201, reply.text
        tasks.append(Task.model_validate(reply.json()))
        client.headers.update(owner)
        approve_task(http=client, market=market, account=user, task=tasks[-1])
        del client.headers["Authorization"]
    stuck, behind = tasks
    assert stuck.payment is not None
    zero = "0x" + "00" * 20
    price = stuck.payment.order.max_price_wei
    market.transact(chain.accounts[1], "assign", task_key(stuck.id), chosen.address, zero, zero,
                    price)  # fmt: skip

    deadline = time.monotonic() + 20
    while True:  # the other provider is refused the stuck task and gets the one behind it
        got = client.post(f"/v1/providers/{other_id}/lease", params={"wait": 2},
                          headers=other_auth)  # fmt: skip
        if got.status_code == 200:
            break
        assert time.monotonic() < deadline, "the queue behind the stuck task never moved"
    assert got.json()["task"]["id"] == behind.id
    taken = client.post(f"/v1/providers/{chosen_id}/lease", params={"wait": 5},
                        headers=chosen_auth)  # fmt: skip
    assert taken.status_code == 200, taken.text
    assert taken.json()["task"]["id"] == stuck.id
    assert taken.json()["task"]["payment"]["provider_address"] == chosen.address
