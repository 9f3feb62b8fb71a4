"""The wallet routes of /gensyn/api: keys, unlock and sign-in, faucet, budget, who may call them.

A real Jupyter server with the extension, a real coordinator with escrow on a
real dev chain (anvil), and the keystore in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from eth_account import Account

from gensyn_jupyter.chain import dev_accounts
from gensyn_jupyter.config import read_session_token, session_file

from .server_helpers import ETH, Api, Coordinator, PaidNetwork, key_of

PASS = "correct horse battery"
Browser = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


async def _unlocked(api: Api, key: str, passphrase: str = PASS) -> tuple[str, dict[str, Any]]:
    """Import ``key`` and unlock it; the address and the wallet state."""
    status, body = await api(
        "wallet", "import", method="POST", body={"private_key": key, "passphrase": passphrase}
    )
    assert status == 201, body
    address = body["address"]
    status, state = await api(
        "wallet", "unlock", method="POST", body={"address": address, "passphrase": passphrase}
    )
    assert status == 200, state
    return address, state


# --- keys ----------------------------------------------------------------------------


async def test_a_new_wallet_is_empty_and_locked(gensyn_api: Api, network: str) -> None:
    status, body = await gensyn_api("wallet")
    assert status == 200
    assert body["keystore"] == [] and body["unlocked"] == [] and body["account"] is None
    assert body["session"] is False and body["balance_wei"] is None
    assert body["credits_wei"] is None and body["network"] == network


async def test_a_created_key_is_stored_encrypted_and_needs_its_passphrase(
    gensyn_api: Api, keystore_dir: pathlib.Path, network: str
) -> None:
    status, body = await gensyn_api("wallet", "create", method="POST", body={"passphrase": PASS})
    assert status == 201
    address = body["address"]
    keyfile = keystore_dir / f"{address}.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert json.loads(keyfile.read_text())["crypto"]["kdf"] == "scrypt"

    status, body = await gensyn_api(
        "wallet", "unlock", method="POST", body={"address": address, "passphrase": "not it at all"}
    )
    assert status == 403
    assert body == {"detail": f"wrong passphrase for {address}", "field": "passphrase"}
    status, body = await gensyn_api("wallet")
    assert body["keystore"] == [address] and body["unlocked"] == []

    status, body = await gensyn_api(
        "wallet", "unlock", method="POST", body={"address": address.lower(), "passphrase": PASS}
    )
    assert status == 200
    assert body["unlocked"] == [address] and body["account"] == address
    assert body["session"] is False  # a free network: nothing to sign in to

    status, body = await gensyn_api("wallet", "create", method="POST", body={"passphrase": "short"})
    assert status == 422 and body["field"] == "passphrase" and "8 characters" in body["detail"]


async def test_import_never_repeats_the_key_and_refuses_bad_keys_and_duplicates(
    gensyn_api: Api, network: str
) -> None:
    user = dev_accounts(1)[0]
    key = key_of(user)
    body_in = {"private_key": key, "passphrase": PASS}
    status, body = await gensyn_api("wallet", "import", method="POST", body=body_in)
    assert status == 201 and body == {"address": user.address}

    status, body = await gensyn_api("wallet", "import", method="POST", body=body_in)
    assert status == 409 and body["field"] == "private_key"
    assert f"{user.address} is already in the keystore" in body["detail"]

    broken = key[:-3] + "xyz"
    status, body = await gensyn_api(
        "wallet", "import", method="POST", body={"private_key": broken, "passphrase": PASS}
    )
    assert status == 400 and body["field"] == "private_key"
    assert "not a private key" in body["detail"]
    for answer in (body["detail"],):
        assert key[2:20] not in answer and broken[2:20] not in answer

    fresh = key_of(Account.create())
    for bad, field in [
        ({"private_key": fresh, "passphrase": "short"}, "passphrase"),
        ({"private_key": fresh}, "passphrase"),
        ({"private_key": 12, "passphrase": PASS}, "private_key"),
        ({"private_key": fresh, "passphrase": PASS, "label": "x"}, "label"),
    ]:
        status, body = await gensyn_api("wallet", "import", method="POST", body=bad)
        assert (status, body["field"]) == (422, field), (bad, body)
        assert fresh[2:20] not in body["detail"]
    status, body = await gensyn_api("wallet", "import", method="POST", raw="{not json")
    assert status == 400 and "not JSON" in body["detail"]
    status, body = await gensyn_api("wallet")
    assert body["keystore"] == [user.address]


async def test_unlocking_an_unknown_address_lists_the_known_ones(
    gensyn_api: Api, network: str
) -> None:
    status, body = await gensyn_api("wallet", "create", method="POST", body={"passphrase": PASS})
    known = body["address"]
    stranger = Account.create().address
    status, body = await gensyn_api(
        "wallet", "unlock", method="POST", body={"address": stranger, "passphrase": PASS}
    )
    assert status == 404 and body["field"] == "address"
    assert stranger in body["detail"] and f"known: {known}" in body["detail"]
    for bad, field in [
        ({"address": "0x123", "passphrase": PASS}, "address"),
        ({"address": known, "passphrase": ""}, "passphrase"),
        ({"address": known, "passphrase": PASS, "ttl_seconds": -1}, "ttl_seconds"),
        ({"address": known, "passphrase": PASS, "ttl_seconds": "1h"}, "ttl_seconds"),
    ]:
        status, body = await gensyn_api("wallet", "unlock", method="POST", body=bad)
        assert (status, body["field"]) == (422, field), (bad, body)


# --- unlock on a network with escrow ----------------------------------------------------


async def test_unlock_signs_in_and_the_kernel_can_submit_with_the_stored_session(
    gensyn_api: Api, paid_network: PaidNetwork, paid_coordinator: Coordinator
) -> None:
    user = paid_network.chain.accounts[0]
    address, state = await _unlocked(gensyn_api, key_of(user))
    assert state["account"] == address == user.address
    assert state["session"] is True and state["network"] == paid_network.url
    assert state["balance_wei"] == paid_network.market.w3.eth.get_balance(user.address)
    assert state["credits_wei"] == 0
    assert stat.S_IMODE(session_file(paid_network.url).stat().st_mode) == 0o600
    token = read_session_token(paid_network.url)  # what the kernel's client sends
    assert token is not None
    task = paid_coordinator.submit_as(token, max_seconds=60)
    assert task["state"] == "awaiting_approval" and task["account"] == user.address


async def test_an_unlock_with_a_time_to_live_locks_itself_again(
    gensyn_api: Api, network: str
) -> None:
    status, body = await gensyn_api("wallet", "create", method="POST", body={"passphrase": PASS})
    address = body["address"]
    status, body = await gensyn_api(
        "wallet",
        "unlock",
        method="POST",
        body={"address": address, "passphrase": PASS, "ttl_seconds": 0.3},
    )
    assert status == 200 and body["account"] == address
    await asyncio.sleep(0.5)
    status, body = await gensyn_api("wallet")
    assert body["unlocked"] == [] and body["account"] is None


async def test_lock_one_account_or_all(gensyn_api: Api, network: str) -> None:
    first, _ = await _unlocked(gensyn_api, key_of(Account.create()))
    second, state = await _unlocked(gensyn_api, key_of(Account.create()))
    assert sorted(state["unlocked"]) == sorted([first, second]) and state["account"] == second
    status, state = await gensyn_api("wallet", "lock", method="POST", body={"address": second})
    assert status == 200 and state["unlocked"] == [first] and state["account"] == first
    status, state = await gensyn_api("wallet", "lock", method="POST")
    assert status == 200 and state["unlocked"] == [] and state["account"] is None
    status, body = await gensyn_api("wallet", "lock", method="POST", body={"address": "nope"})
    assert status == 422 and body["field"] == "address"


# --- chain and faucet ---------------------------------------------------------------------


async def test_chain_is_404_on_a_free_network(gensyn_api: Api, network: str) -> None:
    status, body = await gensyn_api("chain")
    assert status == 404 and "runs without a chain" in body["detail"]
    status, body = await gensyn_api("chain", params={"network": "http://127.0.0.1:9"})
    assert status == 403 and body["field"] == "network"  # not on the allow-list


async def test_chain_of_a_paid_network(gensyn_api: Api, paid_network: PaidNetwork) -> None:
    status, body = await gensyn_api("chain")
    assert status == 200
    assert body["market"] == paid_network.market.address and body["faucet"] is True
    assert body["chain_id"] == paid_network.chain.chain_id


async def test_the_faucet_funds_the_unlocked_account(
    gensyn_api: Api, paid_network: PaidNetwork
) -> None:
    status, body = await gensyn_api("faucet", method="POST")
    assert status == 422 and body["field"] == "address" and "unlock" in body["detail"]
    address, state = await _unlocked(gensyn_api, key_of(Account.create()))
    assert state["balance_wei"] == 0
    status, body = await gensyn_api("faucet", method="POST")
    assert status == 200 and body["address"] == address and body["wei"] == 10 * ETH
    status, state = await gensyn_api("wallet")
    assert state["balance_wei"] == 10 * ETH
    other = Account.create().address
    status, body = await gensyn_api("faucet", method="POST", body={"address": other})
    assert status == 200 and paid_network.market.w3.eth.get_balance(other) == 10 * ETH
    status, body = await gensyn_api("faucet", method="POST", body={"address": "0x12"})
    assert status == 422 and body["field"] == "address"


async def test_a_free_network_has_no_faucet(gensyn_api: Api, network: str) -> None:
    address = Account.create().address
    status, body = await gensyn_api("faucet", method="POST", body={"address": address})
    assert status == 404 and "no faucet here" in body["detail"]


# --- budget -------------------------------------------------------------------------------


async def test_the_budget_is_off_until_set_and_kept_next_to_the_keystore(
    gensyn_api: Api, keystore_dir: pathlib.Path
) -> None:
    status, body = await gensyn_api("budget")
    assert status == 200
    assert (body["enabled"], body["per_task_eth"], body["per_day_eth"]) == (False, "0", "0")
    status, body = await gensyn_api(
        "budget", method="PUT", body={"enabled": True, "per_task_eth": "0.05", "per_day_eth": 1}
    )
    assert status == 200, body
    assert (body["enabled"], body["per_task_eth"], body["per_day_eth"]) == (True, "0.05", "1")
    assert body["per_task_wei"] == 5 * 10**16 and body["spent_today_wei"] == 0
    assert body["file"] == str(keystore_dir / "budget.json")
    assert json.loads((keystore_dir / "budget.json").read_text())["enabled"] is True
    status, body = await gensyn_api("budget", method="PUT", body={"enabled": False})
    assert status == 200 and body["enabled"] is False and body["per_task_eth"] == "0.05"
    for bad, field in [
        ({"per_task_eth": -1}, "per_task_eth"),
        ({"per_task_eth": "lots"}, "per_task_eth"),
        ({"per_day_eth": "0.0000000000000000001"}, "per_day_eth"),
        ({"enabled": "yes"}, "enabled"),
        ({"per_week_eth": 1}, "per_week_eth"),
    ]:
        status, body = await gensyn_api("budget", method="PUT", body=bad)
        assert (status, body["field"]) == (422, field), (bad, body)
    status, body = await gensyn_api("budget")
    assert (body["enabled"], body["per_task_eth"], body["per_day_eth"]) == (False, "0.05", "1")


# --- who may call ---------------------------------------------------------------------------

_ROUTES = [
    ("GET", "chain"),
    ("GET", "wallet"),
    ("POST", "wallet/create"),
    ("POST", "wallet/import"),
    ("POST", "wallet/unlock"),
    ("POST", "wallet/lock"),
    ("GET", "approvals"),
    ("POST", "approvals/t-1/approve"),
    ("POST", "approvals/t-1/reject"),
    ("POST", "faucet"),
    ("GET", "budget"),
    ("PUT", "budget"),
]


@pytest.fixture
def browser(jp_serverapp: Any, http_server_client: Any, jp_base_url: str) -> Browser:
    """``async with browser() as client``: cookies only, logged in once with ``?token=``."""

    @asynccontextmanager
    async def open_browser() -> AsyncIterator[httpx.AsyncClient]:
        base = http_server_client.get_url(jp_base_url)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("login")).status_code == 200
            token = jp_serverapp.identity_provider.token
            r = await client.get("gensyn/api/wallet", params={"token": token})
            assert r.status_code == 200 and "_xsrf" in client.cookies
            yield client

    return open_browser


async def test_without_a_token_or_cookie_every_wallet_route_is_403(
    http_server_client: Any, jp_base_url: str, network: str, keystore_dir: pathlib.Path
) -> None:
    base = http_server_client.get_url(jp_base_url)
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        for method, path in _ROUTES:
            content = json.dumps({"passphrase": PASS}) if method != "GET" else None
            r = await anonymous.request(method, f"gensyn/api/{path}", content=content)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["detail"] and r.json()["field"] is None
    assert not keystore_dir.exists()  # nothing was created


async def test_a_cookie_post_or_put_without_the_xsrf_header_is_refused(
    browser: Browser, network: str, keystore_dir: pathlib.Path
) -> None:
    async with browser() as client:
        for method, path in [(m, p) for m, p in _ROUTES if m != "GET"]:
            r = await client.request(method, f"gensyn/api/{path}", json={"passphrase": PASS})
            assert r.status_code == 403, (method, path, r.text)
            assert "X-XSRFToken" in r.json()["detail"]
        assert not keystore_dir.exists()
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        r = await client.post("gensyn/api/wallet/create", json={"passphrase": PASS}, headers=xsrf)
        assert r.status_code == 201
        r = await client.get("gensyn/api/wallet")
        assert len(r.json()["keystore"]) == 1
