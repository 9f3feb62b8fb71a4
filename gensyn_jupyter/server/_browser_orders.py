"""Approving and refunding with a browser wallet: what it signs and sends, and the order it signed.

:func:`prepare` hands the panel the EIP-712 order and the ``createTask``
call of a waiting task; the wallet signs the one and sends the other;
:func:`post_order` checks the signature, the funding transaction and the
escrow on chain, then posts the signed order to the coordinator with the
browser account's session. :func:`withdrawal` is the market's ``withdraw``
call for the browser account's refunds (no key here can withdraw for it).
Blocking (httpx, web3): call through :meth:`~._wallet.Wallet.run`.
"""

from __future__ import annotations

import time
from typing import Any

from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3Exception

from ..chain import Market, OrderRejected, TaskStatus, format_eth, recover_order_signer
from ..protocol import (
    SignedOrder,
    Task,
    TaskOrder,
    TaskState,
    spec_hash_bytes32,
    task_key,
    task_order_typed_data,
)
from ._browser_wallet import SIGN_IN_AGAIN, BrowserSession, BrowserWallet
from ._calls import fetch_task, request_json, task_of
from ._errors import ApiError

__all__ = ["json_ready", "post_order", "prepare", "withdrawal"]

_SAFE_INT = 2**53 - 1  # above this, a JSON number loses digits in JavaScript
_RECEIPT_SECONDS = 60.0
_SEEN_SECONDS = 3.0  # how long a transaction may take to reach the server's node
_CHAIN_ERRORS = (Web3Exception, OSError, ValueError)


def json_ready(value: Any) -> Any:
    """``value`` with every integer beyond JavaScript's safe range as a decimal string."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SAFE_INT:
        return str(value)
    return value


def _owned(browser: BrowserWallet, network: str, task_id: str) -> tuple[BrowserSession, TaskOrder]:
    """The browser session and the order of a task it may approve (401/403/409 otherwise)."""
    session = browser.require(network)
    try:  # the coordinator shows a task to its owner's session only
        task = fetch_task(browser.http, network, task_id, headers=session.headers)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        raise ApiError(
            404,
            f"task {task_id} is not among the tasks of the account your browser wallet is "
            f"signed in as ({session.address}): pick the account that submitted it in the "
            "wallet, then sign in again",
            "task_id",
        ) from exc
    if task.state != TaskState.AWAITING_APPROVAL:
        raise ApiError(
            409, f"task {task.id} is {task.state.value}, not awaiting approval", "task_id"
        )
    if task.payment is None or task.account is None:
        raise ApiError(409, f"task {task.id} is free: it needs no approval", "task_id")
    if task.account.lower() != session.address.lower():
        raise ApiError(
            403,
            f"task {task.id} belongs to {task.account}; your browser wallet is signed in "
            f"as {session.address}: pick that account in the wallet, then sign in again",
            "task_id",
        )
    return session, task.payment.order


def prepare(browser: BrowserWallet, network: str, task_id: str) -> dict[str, Any]:
    """What the wallet signs and sends to approve ``task_id``: the order and ``createTask``."""
    session, order = _owned(browser, network, task_id)
    info, market = browser.chain(network)
    key = task_key(order.task_id)
    try:
        funded = market.task(key).status != TaskStatus.NONE
    except _CHAIN_ERRORS as exc:
        raise ApiError(502, f"cannot read the escrow from the chain of {network}: {exc}") from exc
    data = market.artifact.function("createTask").encode(
        (
            key,
            spec_hash_bytes32(order.spec_hash),
            order.max_price_wei,
            order.verifier_fee_wei,
            order.deadline,
        )
    )
    return {
        "task_id": task_id,
        "account": session.address,
        "network": network,
        "chain_id": info.chain_id,
        "rpc_url": info.rpc_url,
        "typed_data": json_ready(task_order_typed_data(order)),
        "transaction": {
            "to": market.address,
            "data": data,
            "value": str(order.total_wei),
            "chain_id": info.chain_id,
        },
        "funded": funded,
        "total_wei": str(order.total_wei),
        "total": format_eth(order.total_wei),
    }


def withdrawal(browser: BrowserWallet, network: str) -> dict[str, Any]:
    """The ``withdraw`` call that pays the browser account its refunds (409 when none)."""
    session = browser.require(network)
    info, market = browser.chain(network)
    try:
        credits = int(market.call("credits", session.address))
    except _CHAIN_ERRORS as exc:
        raise ApiError(502, f"cannot read the refunds from the chain of {network}: {exc}") from exc
    if credits == 0:
        raise ApiError(409, f"{session.address} has no refunds to withdraw")
    data = market.artifact.function("withdraw").encode(())
    return {
        "account": session.address,
        "chain_id": info.chain_id,
        "rpc_url": info.rpc_url,
        "transaction": {
            "to": market.address,
            "data": data,
            "value": "0",
            "chain_id": info.chain_id,
        },
        "credits_wei": str(credits),
        "credits": format_eth(credits),
    }


def post_order(
    browser: BrowserWallet, network: str, task_id: str, signature: str, tx_hash: str | None
) -> Task:
    """Check the signature and the escrow, then post the signed order with the session."""
    session, order = _owned(browser, network, task_id)
    signed = SignedOrder(order=order, signature=signature, funding_tx=tx_hash)
    try:
        signer = recover_order_signer(signed)
    except OrderRejected as exc:
        raise ApiError(400, f"order rejected: {exc.reason}", "signature") from None
    if signer.lower() != order.submitter.lower():
        raise ApiError(
            400,
            f"the order was signed by {signer}, not by the task's account {order.submitter}: "
            "sign it with that account",
            "signature",
        )
    _, market = browser.chain(network)
    if tx_hash is not None:
        _check_funding_tx(market, tx_hash)
    try:
        escrow = market.task(task_key(order.task_id))
    except _CHAIN_ERRORS as exc:
        raise ApiError(502, f"cannot read the escrow from the chain of {network}: {exc}") from exc
    if escrow.status == TaskStatus.NONE:
        raise ApiError(
            402,
            f"task {task_id} is not funded: no escrow on chain; send createTask with "
            f"{format_eth(order.total_wei)} to {market.address} first (Approve does)",
            "tx_hash",
        )
    try:
        body = request_json(
            browser.http,
            network,
            "POST",
            f"/v1/tasks/{task_id}/order",
            json=signed.model_dump(mode="json"),
            headers=session.headers,
        )
    except ApiError as exc:
        if exc.status_code != 401:
            raise
        browser.logout(network)  # the coordinator forgot it (restarted, or it expired)
        raise ApiError(
            401, f"{network} no longer knows your browser session: {SIGN_IN_AGAIN}"
        ) from None
    return task_of(body, network)


def _check_funding_tx(market: Market, tx_hash: str) -> None:
    """Wait for the funding transaction; 402 when it failed, 400 when it is not ``createTask``."""
    w3 = market.w3
    try:
        tx = _known_tx(w3, tx_hash)
        receipt = w3.eth.wait_for_transaction_receipt(
            HexStr(tx_hash), timeout=_RECEIPT_SECONDS, poll_latency=0.1
        )
    except TimeExhausted:
        raise ApiError(
            504,
            f"the funding transaction {tx_hash} is not mined after {_RECEIPT_SECONDS:.0f} s: "
            "approve again once it is",
            "tx_hash",
        ) from None
    except _CHAIN_ERRORS as exc:
        raise ApiError(502, f"cannot read the funding transaction: {exc}") from exc
    to = tx.get("to")
    if to is None or str(to).lower() != market.address.lower():
        raise ApiError(
            400, f"transaction {tx_hash} is not a call of the market {market.address}", "tx_hash"
        )
    if receipt["status"] != 1:
        raise ApiError(
            402,
            f"the funding transaction {tx_hash} failed on chain (reverted): nothing was escrowed",
            "tx_hash",
        )


def _known_tx(w3: Web3, tx_hash: str) -> Any:
    """The transaction (pending or mined), waiting a little for it to reach the server's node."""
    deadline = time.monotonic() + _SEEN_SECONDS
    while True:
        try:
            return w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            if time.monotonic() > deadline:
                raise ApiError(
                    400, f"no transaction {tx_hash} on this network's chain", "tx_hash"
                ) from None
            time.sleep(0.2)
