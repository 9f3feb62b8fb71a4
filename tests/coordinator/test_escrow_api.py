"""A coordinator with escrow on a real anvil: sign-in, orders, assignment, settlement.

The app runs with its lifespan (chain watcher and keeper) through Starlette's
TestClient; the chain is a real anvil process with the TaskMarket deployed.
Every check is what a user or provider would see: a status code and its
message, a task state, or a balance.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import (
    Devchain,
    Market,
    MarketConfig,
    approve_task,
    sign_in,
    sign_order,
    start_anvil,
    start_embedded,
)
from gensyn_jupyter.coordinator import ChainConfig, create_app
from gensyn_jupyter.protocol import Task, TaskOrder, task_key, task_order_typed_data

from .coordinator_helpers import bundle_bytes, sha

ETH = 10**18
RATE = 10**12  # wei per GPU-second
_PROVIDER_INFO = {
    "name": "staked",
    "device_type": "cpu",
    "cpu_count": 2,
    "python": "3.11.7",
    "torch": "2.13.0",
}


@pytest.fixture(scope="module", params=["anvil", "embedded"])
def chain(request: pytest.FixtureRequest) -> Iterator[Devchain]:
    """Both dev nodes: the embedded one must behave as anvil does for the whole flow."""
    node = start_anvil() if request.param == "anvil" else start_embedded()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def market(chain: Devchain) -> Market:
    """A fresh market per test (so balances start clean): operator 1, referee 8, treasury 9."""
    acc = chain.accounts
    return Market.deploy(
        w3=Web3(HTTPProvider(chain.rpc_url)),
        deployer=acc[0],
        config=MarketConfig(
            operator=acc[1].address,
            referee=acc[8].address,
            treasury=acc[9].address,
            min_stake=ETH,
            min_bond=ETH // 10,
            unbonding_delay=60,
            challenge_window=1,
        ),
    )


def _key(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


@pytest.fixture
def client(tmp_path: Path, chain: Devchain, market: Market) -> Iterator[TestClient]:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
        blob_dir=tmp_path / "blobs",
        chain=ChainConfig(
            rpc_url=chain.rpc_url,
            market=market.address,
            operator_key=_key(chain.accounts[1]),
            rate_wei_per_gpu_second=RATE,
            faucet_key=_key(chain.accounts[7]),
            poll_seconds=0.05,
            from_block=int(market.w3.eth.block_number),
        ),
    )
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield http


def _signed_in(client: TestClient, account: LocalAccount) -> dict[str, str]:
    session = sign_in(client, account)
    return {"Authorization": f"Bearer {session.token}"}


def _submit(client: TestClient, headers: dict[str, str], **spec: Any) -> Task:
    data = bundle_bytes()
    assert client.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
    reply = client.post("/v1/tasks", json={"bundle": sha(data), **spec}, headers=headers)
    assert reply.status_code == 201, reply.text
    return Task.model_validate(reply.json())


def _wait_task(client: TestClient, task_id: str, ok: Any, timeout: float = 20) -> Task:
    deadline = time.monotonic() + timeout
    while True:
        task = Task.model_validate(client.get(f"/v1/tasks/{task_id}").json())
        if ok(task):
            return task
        assert time.monotonic() < deadline, f"task stuck: {task.state} {task.payment}"
        time.sleep(0.05)


def test_a_paid_network_says_where_its_escrow_is(client: TestClient, market: Market) -> None:
    info = client.get("/v1/chain").json()
    assert info["market"] == market.address
    assert info["chain_id"] == 31337
    assert info["min_stake_wei"] == ETH
    assert info["rate_wei_per_gpu_second"] == RATE


def test_submitting_without_signing_in_is_refused_with_what_to_do(client: TestClient) -> None:
    data = bundle_bytes()
    client.put(f"/v1/blobs/{sha(data)}", content=data)
    reply = client.post("/v1/tasks", json={"bundle": sha(data)})
    assert reply.status_code == 401
    assert "sign in first" in reply.json()["detail"]
    assert "gensyn signer" in reply.json()["detail"]


def test_sign_in_nonce_is_single_use_and_signature_must_match(
    client: TestClient, chain: Devchain
) -> None:
    from gensyn_jupyter.chain import SiweMessage, sign_siwe

    user, other = chain.accounts[0], chain.accounts[5]
    nonce = client.post("/v1/auth/nonce").json()
    message = SiweMessage.create(
        domain=nonce["domain"],
        address=user.address,
        uri=nonce["uri"],
        chain_id=nonce["chain_id"],
        nonce=nonce["nonce"],
    )
    forged = client.post(
        "/v1/auth/login",
        json={"message": message.to_text(), "signature": sign_siwe(other, message)},
    )
    assert forged.status_code == 401
    assert "sign-in refused" in forged.json()["detail"]
    replay = client.post(
        "/v1/auth/login",
        json={"message": message.to_text(), "signature": sign_siwe(user, message)},
    )
    assert replay.status_code == 401  # the nonce died with the first attempt
    assert "nonce unknown, used or expired" in replay.json()["detail"]
    session = sign_in(client, user)
    assert session.address == user.address


def test_a_task_waits_for_approval_with_the_order_to_sign(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    user = chain.accounts[0]
    headers = _signed_in(client, user)
    task = _submit(client, headers, max_seconds=100, gpus=1)
    assert task.state == "awaiting_approval"
    assert task.account == user.address
    assert task.payment is not None
    order = task.payment.order
    assert order.max_price_wei == RATE * 100
    assert order.submitter == user.address
    assert (order.chain_id, order.contract) == (31337, market.address)
    events = client.get(
        f"/v1/tasks/{task.id}/events", params={"format": "json"}, headers=headers
    ).json()
    assert "awaiting approval" in events[-1]["data"]["message"]


def _forged(signer: LocalAccount, order: TaskOrder) -> dict[str, Any]:
    """``order`` signed by a key that is not its submitter's (sign_order refuses that)."""
    message = encode_typed_data(full_message=task_order_typed_data(order))
    signature = "0x" + bytes(signer.sign_message(message).signature).hex()
    return {"order": order.model_dump(mode="json"), "signature": signature}


def _order_error(client: TestClient, task: Task, headers: dict[str, str], body: Any) -> Any:
    reply = client.post(f"/v1/tasks/{task.id}/order", json=body, headers=headers)
    return reply.status_code, reply.json()["detail"]


def test_orders_that_do_not_check_out_are_refused_and_nothing_is_queued(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    user, stranger = chain.accounts[0], chain.accounts[5]
    headers = _signed_in(client, user)
    task = _submit(client, headers, max_seconds=50)
    assert task.payment is not None
    order = task.payment.order

    # not funded on chain yet
    status, detail = _order_error(
        client, task, headers, sign_order(user, order).model_dump(mode="json")
    )
    assert status == 402 and "no escrow" in detail and "createTask" in detail

    # signed by someone else
    status, detail = _order_error(client, task, headers, _forged(stranger, order))
    assert status == 400 and "order rejected" in detail

    # another chain, another contract
    for change, word in (({"chain_id": 1}, "chain"), ({"contract": stranger.address}, "contract")):
        wrong = order.model_copy(update=change)
        status, detail = _order_error(
            client, task, headers, sign_order(user, wrong).model_dump(mode="json")
        )
        assert status == 400 and word in detail, detail

    # more money than the quote
    bigger = order.model_copy(update={"max_price_wei": order.max_price_wei + 1})
    status, detail = _order_error(
        client, task, headers, sign_order(user, bigger).model_dump(mode="json")
    )
    assert status == 400 and "max_price_wei" in detail
    read = client.get(f"/v1/tasks/{task.id}", headers=headers)
    assert read.json()["state"] == "awaiting_approval"


def test_approval_funds_the_escrow_and_queues_the_task_once(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    user = chain.accounts[0]
    headers = _signed_in(client, user)
    client.headers.update(headers)
    task = _submit(client, headers, max_seconds=50)
    assert task.payment is not None
    before = market.w3.eth.get_balance(market.address)
    signed = approve_task(http=client, market=market, account=user, task=task)
    assert market.w3.eth.get_balance(market.address) - before == task.payment.order.total_wei
    queued = Task.model_validate(client.get(f"/v1/tasks/{task.id}").json())
    assert queued.state == "queued"
    assert queued.payment is not None and queued.payment.funded
    # the same order again: replay
    status, detail = _order_error(client, task, headers, signed.model_dump(mode="json"))
    assert status == 409 and "already used" in detail
    # the same nonce for another task
    other = _submit(client, headers, max_seconds=50)
    assert other.payment is not None
    reused = other.payment.order.model_copy(update={"nonce": task.payment.order.nonce})
    market.transact(
        user,
        "createTask",
        task_key(other.id),
        bytes.fromhex(reused.spec_hash),
        reused.max_price_wei,
        reused.verifier_fee_wei,
        reused.deadline,
        value=reused.total_wei,
    )
    status, detail = _order_error(
        client, other, headers, sign_order(user, reused).model_dump(mode="json")
    )
    assert status == 409 and f"nonce {task.payment.order.nonce}" in detail


def _gas_cost(w3: Web3, tx_hash: str) -> int:
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def test_paid_task_settles_provider_paid_rest_refunded_balances_exact(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    w3 = market.w3
    user, worker = chain.accounts[0], chain.accounts[3]
    headers = _signed_in(client, user)
    client.headers.update(headers)
    # the provider stakes, signs in with its own key and registers
    market.transact(worker, "stake", value=ETH)
    reg = client.post("/v1/providers", json=_PROVIDER_INFO, headers=_signed_in(client, worker))
    assert reg.status_code == 201 and reg.json()["provider"]["address"] == worker.address
    provider_id, token = reg.json()["provider"]["id"], reg.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}

    task = _submit(client, headers, max_seconds=60)
    assert task.payment is not None
    total = task.payment.order.total_wei
    user_before, worker_before = (
        w3.eth.get_balance(user.address),
        w3.eth.get_balance(worker.address),
    )
    approve_task(http=client, market=market, account=user, task=task)

    lease = client.post(f"/v1/providers/{provider_id}/lease", params={"wait": 5}, headers=auth)
    assert lease.status_code == 200, lease.text
    leased = lease.json()
    assert leased["task"]["payment"]["provider_address"] == worker.address
    assert [t["kind"] for t in leased["task"]["payment"]["transactions"]] == ["fund", "assign"]

    # a result without an on-chain commit is refused
    refused = client.post(
        f"/v1/leases/{leased['id']}/result", json={"duration_s": 2.0}, headers=auth
    )
    assert refused.status_code == 400 and "commit_tx" in refused.json()["detail"]

    due = RATE * 2  # 2 GPU-seconds
    digest = hashlib.sha256(b"result").digest()
    receipt = market.transact(worker, "commit", task_key(task.id), digest, digest, due)
    commit_tx = "0x" + bytes(receipt["transactionHash"]).hex()
    posted = client.post(
        f"/v1/leases/{leased['id']}/result",
        json={"duration_s": 2.0, "commit_tx": commit_tx},
        headers=auth,
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["state"] == "verified"

    settled = _wait_task(client, task.id, lambda t: t.state == "settled")
    payment = settled.payment
    assert payment is not None
    assert (payment.outcome, payment.provider_paid_wei, payment.refunded_wei) == (
        "finalized",
        due,
        total - due,
    )
    kinds = [t.kind for t in payment.transactions]
    assert kinds[:2] == ["fund", "assign"] and "commit" in kinds and kinds[-1] == "finalize"

    # pull payments: both withdraw, and every wei is where the rules say
    user_w = market.transact(user, "withdraw")
    worker_w = market.transact(worker, "withdraw")
    fund_tx = next(t.hash for t in payment.transactions if t.kind == "fund")
    user_gas = _gas_cost(w3, fund_tx) + int(user_w["gasUsed"]) * int(user_w["effectiveGasPrice"])
    worker_gas = _gas_cost(w3, commit_tx) + int(worker_w["gasUsed"]) * int(
        worker_w["effectiveGasPrice"]
    )
    assert w3.eth.get_balance(user.address) == user_before - due - user_gas
    assert w3.eth.get_balance(worker.address) == worker_before + due - worker_gas
    contract = w3.eth.get_balance(market.address)
    assert contract == ETH  # only the provider's stake is left
    assert contract == sum(
        int(market.call(name))
        for name in ("totalEscrow", "totalStake", "totalBonds", "totalCredits")
    )


def test_an_unstaked_provider_is_not_offered_paid_tasks(
    client: TestClient, chain: Devchain, market: Market
) -> None:
    user, poor = chain.accounts[0], chain.accounts[4]
    headers = _signed_in(client, user)
    client.headers.update(headers)
    reg = client.post("/v1/providers", json=_PROVIDER_INFO, headers=_signed_in(client, poor))
    provider_id, token = reg.json()["provider"]["id"], reg.json()["token"]
    task = _submit(client, headers, max_seconds=30)
    approve_task(http=client, market=market, account=user, task=task)
    lease = client.post(
        f"/v1/providers/{provider_id}/lease",
        params={"wait": 0.3},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert lease.status_code == 204
    assert client.get(f"/v1/tasks/{task.id}").json()["state"] == "queued"


def test_the_watcher_survives_a_restart_without_missing_or_double_counting(
    tmp_path: Path, chain: Devchain, market: Market
) -> None:
    user = chain.accounts[0]
    config = ChainConfig(
        rpc_url=chain.rpc_url,
        market=market.address,
        operator_key=_key(chain.accounts[1]),
        poll_seconds=0.05,
        from_block=int(market.w3.eth.block_number),
    )

    def app() -> Any:
        return create_app(
            database_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
            blob_dir=tmp_path / "blobs",
            chain=config,
        )

    with TestClient(app(), base_url="http://127.0.0.1:8765") as first:
        headers = _signed_in(first, user)
        first.headers.update(headers)
        task = _submit(first, headers, max_seconds=30)
    assert task.payment is not None
    # while the coordinator is down, the owner funds the escrow and then cancels it
    order = task.payment.order
    market.transact(
        user,
        "createTask",
        task_key(task.id),
        bytes.fromhex(order.spec_hash),
        order.max_price_wei,
        order.verifier_fee_wei,
        order.deadline,
        value=order.total_wei,
    )
    market.transact(user, "cancelTask", task_key(task.id))
    for _ in range(2):  # two restarts: the second must not apply anything again
        with TestClient(app(), base_url="http://127.0.0.1:8765") as again:
            again.headers.update(headers)  # task reads are the owner's
            seen = _wait_task(
                again,
                task.id,
                lambda t: t.payment is not None and t.payment.outcome == "cancelled",
            )
            assert seen.payment is not None
            assert seen.payment.refunded_wei == order.total_wei
            assert [t.kind for t in seen.payment.transactions] == ["fund", "cancel"]


def test_faucet_funds_an_address_on_a_devnet(client: TestClient, market: Market) -> None:
    fresh = Account.create()
    reply = client.post("/v1/faucet", json={"address": fresh.address})
    assert reply.status_code == 200, reply.text
    assert market.w3.eth.get_balance(fresh.address) == 10 * ETH
    bad = client.post("/v1/faucet", json={"address": "0x123"})
    assert bad.status_code == 422


def test_a_malformed_sign_in_message_gets_a_400_that_says_so(client: TestClient) -> None:
    reply = client.post(
        "/v1/auth/login", json={"message": "let me in", "signature": "0x" + "1" * 130}
    )
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("sign-in message:")
