"""The browser wallet's routes: sign in with a wallet the server never sees, approve with it.

A real Jupyter server with the extension, a real coordinator with escrow on a
real dev chain (anvil). The browser wallet is played by eth-account here: it
signs what the routes hand out (``personal_sign``, ``eth_signTypedData_v4``)
and sends the ``createTask`` transaction to the node itself, as a wallet does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import SiweMessage, TaskStatus
from gensyn_jupyter.config import read_session_token, session_file
from gensyn_jupyter.protocol import task_key

from .server_helpers import Api, Coordinator, PaidNetwork, key_of

PASS = "correct horse battery"
Browser = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


# --- a wallet ------------------------------------------------------------------------


def _hex(signature: bytes) -> str:
    return "0x" + bytes(signature).hex()


async def _challenge(api: Api, account: LocalAccount, chain_id: int = 31337) -> tuple[int, Any]:
    body = {"address": account.address, "chain_id": chain_id}
    return await api("wallet", "browser", "challenge", method="POST", body=body)


async def _sign_in(api: Api, account: LocalAccount) -> dict[str, Any]:
    """Challenge, ``personal_sign`` and login, as the panel does; the wallet state."""
    status, challenge = await _challenge(api, account)
    assert status == 200, challenge
    signature = account.sign_message(encode_defunct(text=challenge["message"])).signature
    body = {
        "address": account.address,
        "message": challenge["message"],
        "signature": _hex(signature),
    }
    status, state = await api("wallet", "browser", "login", method="POST", body=body)
    assert status == 200, state
    return dict(state)


async def _funded(api: Api) -> LocalAccount:
    """A new account with devnet coins (the faucet)."""
    account: LocalAccount = Account.create()
    status, body = await api("faucet", method="POST", body={"address": account.address})
    assert status == 200, body
    return account


def _send(w3: Web3, account: LocalAccount, tx: dict[str, Any]) -> str:
    """Fill, sign and send ``tx`` as a wallet does (``eth_sendTransaction``)."""
    full = {
        "from": account.address,
        "to": tx["to"],
        "data": tx["data"],
        "value": int(tx["value"]),
        "chainId": tx["chain_id"],
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "gasPrice": w3.eth.gas_price,
    }
    full["gas"] = w3.eth.estimate_gas(full)  # type: ignore[arg-type]
    signed = account.sign_transaction(full)
    return w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


def _submit(coordinator: Coordinator, network: str, **spec: Any) -> dict[str, Any]:
    """A task submitted with the stored session, as ``%%gensyn_train`` does."""
    token = read_session_token(network)
    assert token is not None, "the browser login should have stored a session for the kernel"
    return coordinator.submit_as(token, **spec)


@pytest.fixture
def w3(paid_network: PaidNetwork) -> Web3:
    return Web3(HTTPProvider(paid_network.chain.rpc_url))


# --- sign-in -------------------------------------------------------------------------


async def test_the_challenge_is_the_coordinators_sign_in_message_for_the_wallet(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    account = Account.create()
    status, body = await _challenge(gensyn_api, account)
    assert status == 200, body
    message = SiweMessage.parse(body["message"])
    host = paid_network.url.removeprefix("http://")
    assert (message.domain, message.uri) == (host, paid_network.url)
    assert message.address == account.address and message.chain_id == 31337
    assert message.statement and "Sign in to the gensyn-jupyter coordinator" in message.statement
    assert body["expiration_time"] == message.expiration_time and body["chain_id"] == 31337
    assert body["network"] == paid_network.url


async def test_a_browser_login_makes_it_the_account_in_use_and_the_kernels(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator, w3: Web3
) -> None:
    account = await _funded(gensyn_api)
    state = await _sign_in(gensyn_api, account)
    assert state["account"] == account.address and state["source"] == "browser"
    assert state["session"] is True and state["keystore"] == []
    browser = state["browser"]
    assert browser["address"] == account.address and browser["signed_in"] is True
    assert browser["chain_id"] == 31337 and browser["network"] == paid_network.url
    assert browser["balance_wei"] == state["balance_wei"] == w3.eth.get_balance(account.address)
    stored = json.loads(session_file(paid_network.url).read_text())
    assert stored["address"] == account.address

    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    assert task["account"] == account.address and task["state"] == "awaiting_approval"
    status, waiting = await gensyn_api("approvals")  # no account named: the browser's
    assert status == 200 and [w["task_id"] for w in waiting] == [task["id"]]
    status, again = await gensyn_api("wallet")
    assert again["account"] == account.address and again["browser"]["signed_in"] is True


async def test_a_forged_or_wrong_chain_sign_in_changes_nothing(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    account, thief = Account.create(), Account.create()
    status, body = await _challenge(gensyn_api, account, chain_id=1)
    assert status == 409 and body["field"] == "chain_id"
    assert body["detail"].startswith("your wallet is on chain 1, this network is chain 31337")

    status, challenge = await _challenge(gensyn_api, account)
    forged = thief.sign_message(encode_defunct(text=challenge["message"])).signature
    body = {"address": account.address, "message": challenge["message"], "signature": _hex(forged)}
    status, answer = await gensyn_api("wallet", "browser", "login", method="POST", body=body)
    assert status == 401 and "sign-in refused" in answer["detail"], answer
    body["address"] = thief.address  # the message names another account
    status, answer = await gensyn_api("wallet", "browser", "login", method="POST", body=body)
    assert status == 400 and answer["field"] == "message"
    status, state = await gensyn_api("wallet")
    assert state["browser"] is None and state["account"] is None
    assert not session_file(paid_network.url).exists()


async def test_logout_forgets_the_browser_account_and_unlock_hands_the_kernel_back(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    keyed, browser = Account.create(), Account.create()
    status, body = await gensyn_api(
        "wallet", "import", method="POST", body={"private_key": key_of(keyed), "passphrase": PASS}
    )
    assert status == 201, body
    unlock = {"address": keyed.address, "passphrase": PASS}
    status, state = await gensyn_api("wallet", "unlock", method="POST", body=unlock)
    assert state["account"] == keyed.address and state["source"] == "keystore"

    state = await _sign_in(gensyn_api, browser)
    assert state["account"] == browser.address and state["unlocked"] == [keyed.address]
    path = session_file(paid_network.url)
    assert json.loads(path.read_text())["address"] == browser.address

    status, state = await gensyn_api("wallet", "unlock", method="POST", body=unlock)
    assert state["account"] == keyed.address and state["source"] == "keystore"
    assert state["browser"]["address"] == browser.address  # still signed in, not in use
    assert json.loads(path.read_text())["address"] == keyed.address

    await _sign_in(gensyn_api, browser)
    status, state = await gensyn_api("wallet", "browser", "logout", method="POST")
    assert status == 200 and state["browser"] is None
    assert state["account"] == keyed.address and state["source"] == "keystore"
    assert json.loads(path.read_text())["address"] == keyed.address

    status, _ = await gensyn_api("wallet", "lock", method="POST")
    await _sign_in(gensyn_api, browser)
    status, state = await gensyn_api("wallet", "browser", "logout", method="POST")
    assert state["account"] is None and not path.exists()  # no one left to submit as


async def test_a_free_network_has_nothing_to_sign_in_to(gensyn_api: Api, network: str) -> None:
    status, body = await _challenge(gensyn_api, Account.create())
    assert status == 409 and "runs without a chain" in body["detail"]


# --- approving -----------------------------------------------------------------------


async def test_the_browser_wallet_funds_signs_and_posts_the_order(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator, w3: Web3
) -> None:
    account = await _funded(gensyn_api)
    await _sign_in(gensyn_api, account)
    task = _submit(paid_coordinator, paid_network.url, max_seconds=120, gpus=2)
    order = task["payment"]["order"]
    total = order["max_price_wei"] + order["verifier_fee_wei"]

    status, prepared = await gensyn_api("approvals", task["id"], "prepare")
    assert status == 200, prepared
    market = paid_network.market
    assert prepared["funded"] is False and prepared["chain_id"] == 31337
    assert prepared["rpc_url"] == paid_network.chain.rpc_url
    assert prepared["total_wei"] == str(total) and prepared["account"] == account.address
    tx = prepared["transaction"]
    assert (tx["to"], tx["value"], tx["chain_id"]) == (market.address, str(total), 31337)
    typed = prepared["typed_data"]
    assert typed["primaryType"] == "TaskOrder" and typed["domain"]["verifyingContract"] == (
        market.address
    )
    assert typed["message"]["submitter"] == account.address
    assert typed["message"]["taskId"] == "0x" + task_key(task["id"]).hex()

    signature = account.sign_message(encode_typed_data(full_message=typed)).signature
    before = w3.eth.get_balance(market.address)
    tx_hash = _send(w3, account, tx)
    body = {"signature": _hex(signature), "tx_hash": tx_hash}
    status, approved = await gensyn_api("approvals", task["id"], "order", method="POST", body=body)
    assert status == 200, approved
    assert approved["id"] == task["id"] and approved["state"] == "queued"
    assert approved["payment"]["signed"] and approved["payment"]["funded"]
    assert tx_hash.lower() in [t["hash"] for t in approved["payment"]["transactions"]]
    escrow = market.task(task_key(task["id"]))
    assert escrow.status == TaskStatus.OPEN and escrow.submitter == account.address
    assert w3.eth.get_balance(market.address) - before == total

    status, body = await gensyn_api("approvals", task["id"], "order", method="POST", body=body)
    assert status == 409 and "is queued, not awaiting approval" in body["detail"]
    status, body = await gensyn_api("approvals", task["id"], "prepare")
    assert status == 409


async def test_an_order_without_escrow_or_by_another_key_is_refused_and_the_task_waits(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator, w3: Web3
) -> None:
    account, other = await _funded(gensyn_api), Account.create()
    await _sign_in(gensyn_api, account)
    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    status, prepared = await gensyn_api("approvals", task["id"], "prepare")
    typed = prepared["typed_data"]
    signature = _hex(account.sign_message(encode_typed_data(full_message=typed)).signature)
    path = ("approvals", task["id"], "order")

    status, body = await gensyn_api(*path, method="POST", body={"signature": signature})
    assert status == 402 and body["detail"].startswith(f"task {task['id']} is not funded")
    stranger = _hex(other.sign_message(encode_typed_data(full_message=typed)).signature)
    status, body = await gensyn_api(*path, method="POST", body={"signature": stranger})
    assert status == 400 and f"signed by {other.address}" in body["detail"]
    for bad in ("0x1234", "not hex", "0x" + "zz" * 65):
        status, body = await gensyn_api(*path, method="POST", body={"signature": bad})
        assert status == 400 and body["field"] == "signature", body
    bad_hash = {"signature": signature, "tx_hash": "0x12"}
    status, body = await gensyn_api(*path, method="POST", body=bad_hash)
    assert status == 400 and body["field"] == "tx_hash"
    unknown = {"signature": signature, "tx_hash": "0x" + "ab" * 32}
    status, body = await gensyn_api(*path, method="POST", body=unknown)
    assert status == 400 and "no transaction" in body["detail"]
    # a transaction that is not createTask on the market (a plain transfer)
    transfer = _send(
        w3, account, {"to": other.address, "data": "0x", "value": 1, "chain_id": 31337}
    )
    status, body = await gensyn_api(*path, method="POST", body={**unknown, "tx_hash": transfer})
    assert status == 400 and "is not a call of the market" in body["detail"]
    assert paid_coordinator.task(task["id"])["state"] == "awaiting_approval"

    # already funded (an approval that stopped half-way): prepare says so, no second escrow
    _send(w3, account, prepared["transaction"])
    status, again = await gensyn_api("approvals", task["id"], "prepare")
    assert status == 200 and again["funded"] is True
    status, body = await gensyn_api(*path, method="POST", body={"signature": signature})
    assert status == 200 and body["state"] == "queued"


async def test_approving_needs_the_browser_session_of_the_tasks_account(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    owner, other = await _funded(gensyn_api), Account.create()
    await _sign_in(gensyn_api, owner)
    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    signature = "0x" + "11" * 65
    await _sign_in(gensyn_api, other)
    status, body = await gensyn_api("approvals", task["id"], "prepare")
    assert status == 404 and f"signed in as ({other.address})" in body["detail"]

    status, _ = await gensyn_api("wallet", "browser", "logout", method="POST")
    for method, action, payload in (
        ("GET", "prepare", None),
        ("POST", "order", {"signature": signature}),
    ):
        status, body = await gensyn_api(
            "approvals", task["id"], action, method=method, body=payload
        )
        assert status == 401, body
        assert "connect and sign in with your browser wallet again" in body["detail"]
    status, body = await gensyn_api("approvals", "no-such-task", "prepare")
    assert status == 401  # not signed in comes first
    await _sign_in(gensyn_api, owner)
    status, body = await gensyn_api("approvals", "no-such-task", "prepare")
    assert status == 404
    status, body = await gensyn_api("approvals", "a.b", "prepare")
    assert status == 404 and body["field"] == "task_id"
    assert paid_coordinator.task(task["id"])["state"] == "awaiting_approval"


async def test_refunds_are_withdrawn_by_the_wallet_with_the_call_the_server_prepares(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator, w3: Web3
) -> None:
    account = await _funded(gensyn_api)
    await _sign_in(gensyn_api, account)
    status, body = await gensyn_api("wallet", "browser", "withdrawal")
    assert status == 409 and body["detail"] == f"{account.address} has no refunds to withdraw"
    # an escrow funded, then cancelled on chain by its submitter: a credit in the market
    task = _submit(paid_coordinator, paid_network.url, max_seconds=30)
    status, prepared = await gensyn_api("approvals", task["id"], "prepare")
    total = int(prepared["total_wei"])
    _send(w3, account, prepared["transaction"])
    market = paid_network.market
    cancel = market.artifact.function("cancelTask").encode((task_key(task["id"]),))
    _send(w3, account, {"to": market.address, "data": cancel, "value": 0, "chain_id": 31337})
    status, state = await gensyn_api("wallet")
    assert state["browser"]["credits_wei"] == state["credits_wei"] == total

    status, withdrawal = await gensyn_api("wallet", "browser", "withdrawal")
    assert status == 200, withdrawal
    assert withdrawal["credits_wei"] == str(total) and withdrawal["account"] == account.address
    tx = withdrawal["transaction"]
    assert (tx["to"], tx["value"], tx["chain_id"]) == (market.address, "0", 31337)
    before = w3.eth.get_balance(account.address)
    receipt = w3.eth.wait_for_transaction_receipt(_send(w3, account, tx))  # type: ignore[arg-type]
    gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert w3.eth.get_balance(account.address) == before + total - gas
    assert market.call("credits", account.address) == 0

    status, _ = await gensyn_api("wallet", "browser", "logout", method="POST")
    status, body = await gensyn_api("wallet", "browser", "withdrawal")
    assert status == 401 and "sign in with your browser wallet again" in body["detail"]


# --- malformed requests, and who may call ---------------------------------------------


async def test_malformed_bodies_get_4xx_naming_the_field(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    address = Account.create().address
    cases: list[tuple[tuple[str, ...], Any, int, str | None]] = [
        (("wallet", "browser", "challenge"), {"chain_id": 31337}, 422, "address"),
        (("wallet", "browser", "challenge"), {"address": "0x12", "chain_id": 1}, 422, "address"),
        (("wallet", "browser", "challenge"), {"address": address}, 422, "chain_id"),
        (
            ("wallet", "browser", "challenge"),
            {"address": address, "chain_id": "1"},
            422,
            "chain_id",
        ),
        (
            ("wallet", "browser", "challenge"),
            {"address": address, "chain_id": True},
            422,
            "chain_id",
        ),
        (("wallet", "browser", "challenge"), {"address": address, "chain_id": 0}, 422, "chain_id"),
        (("wallet", "browser", "challenge"), {"address": address, "x": 1}, 422, "x"),
        (("wallet", "browser", "login"), {"address": address, "signature": "0x"}, 422, "message"),
        (
            ("wallet", "browser", "login"),
            {"address": address, "message": "", "signature": "0x" + "11" * 65},
            422,
            "message",
        ),
        (
            ("wallet", "browser", "login"),
            {"address": address, "message": "hello", "signature": "0x11"},
            400,
            "signature",
        ),
        (
            ("wallet", "browser", "login"),
            {"address": address, "message": "hello", "signature": "0x" + "11" * 65},
            400,
            "message",
        ),
        (("wallet", "browser", "logout"), {"network": 3}, 422, "network"),
        (("approvals", "t-1", "order"), {}, 422, "signature"),
        (("approvals", "t-1", "order"), {"signature": 5}, 422, "signature"),
    ]
    for path, body, want, field in cases:
        status, answer = await gensyn_api(*path, method="POST", body=body)
        assert (status, answer["field"]) == (want, field), (path, body, answer)
        assert answer["detail"]
    for path in (("wallet", "browser", "login"), ("approvals", "t-1", "order")):
        for raw in ("{not json", "[1, 2]"):
            status, answer = await gensyn_api(*path, method="POST", raw=raw)
            assert status == 400 and answer["detail"], (path, raw, answer)


async def test_an_unreachable_coordinator_is_a_502_not_a_500(
    gensyn_api: Api, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENSYN_NETWORK", dead_url)
    status, body = await _challenge(gensyn_api, Account.create())
    assert status == 502 and "cannot reach the coordinator" in body["detail"]


@pytest.fixture
def browser(jp_serverapp: Any, http_server_client: Any, jp_base_url: str) -> Browser:
    """``async with browser() as client``: cookies only, as a logged-in page (see test_auth)."""

    @asynccontextmanager
    async def open_browser() -> AsyncIterator[httpx.AsyncClient]:
        base = http_server_client.get_url(jp_base_url)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("login")).status_code == 200
            token = jp_serverapp.identity_provider.token
            r = await client.get("gensyn/api/health", params={"token": token})
            assert r.status_code == 200 and "_xsrf" in client.cookies
            yield client

    return open_browser


_ROUTES = [
    ("POST", "gensyn/api/wallet/browser/challenge"),
    ("POST", "gensyn/api/wallet/browser/login"),
    ("POST", "gensyn/api/wallet/browser/logout"),
    ("GET", "gensyn/api/wallet/browser/withdrawal"),
    ("GET", "gensyn/api/approvals/t-1/prepare"),
    ("POST", "gensyn/api/approvals/t-1/order"),
]


async def test_without_a_token_or_cookie_the_browser_routes_are_403(
    http_server_client: Any, jp_base_url: str, paid_network: PaidNetwork
) -> None:
    base = http_server_client.get_url(jp_base_url)
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        for method, path in _ROUTES:
            r = await anonymous.request(method, path, json={})
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["detail"] and r.json()["field"] is None


async def test_a_cookie_post_without_the_xsrf_header_is_refused(
    browser: Browser, paid_network: PaidNetwork
) -> None:
    account = Account.create()
    async with browser() as client:
        for method, path in _ROUTES:
            if method != "POST":
                continue
            r = await client.post(path, json={"address": account.address, "chain_id": 31337})
            assert r.status_code == 403, (path, r.text)
            assert "X-XSRFToken" in r.json()["detail"]
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        r = await client.post(
            "gensyn/api/wallet/browser/challenge",
            json={"address": account.address, "chain_id": 31337},
            headers=xsrf,
        )
        assert r.status_code == 200, r.text
        r = await client.get("gensyn/api/approvals/t-1/prepare")  # a GET needs no header
        assert r.status_code == 401, r.text
