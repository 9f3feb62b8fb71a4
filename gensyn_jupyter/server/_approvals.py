"""Approving, rejecting and describing tasks that wait for their owner's order.

Blocking (web3, the ``chain`` helpers): the handlers run these through
:meth:`~._wallet.Wallet.run`. The key that signs is the task owner's, from
the server's keystore, and only while it is unlocked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from web3.exceptions import Web3Exception

from ..chain import (
    BudgetLedger,
    KeystoreLocked,
    MarketError,
    TaskStatus,
    approve_task,
    format_eth,
)
from ..config import read_session_token
from ..protocol import CoordinatorError, Task, TaskState, task_key
from ._calls import coordinator_errors, fetch_task, request_json, task_of
from ._errors import ApiError
from ._origin import origin_fields, size_text
from ._sessions import Link
from ._wallet import Wallet

__all__ = ["approve", "describe", "faucet", "pending", "read_task", "reject"]

_REFUND_ERRORS = (
    httpx.HTTPError,
    CoordinatorError,
    MarketError,
    Web3Exception,
    OSError,
    ValueError,
)
_UNLOCK = "unlock it in the Gensyn panel (Wallet) or with POST /gensyn/api/wallet/unlock"


def describe(task: Task, ledger: BudgetLedger, root_dir: str | None = None) -> dict[str, Any]:
    """A waiting task as a person reads it: the order, its amounts in ETH, and the budget's say.

    Also what the cell asked for beyond the order: the bundle's size, and the
    notebook and cell it came from (``notebook_path`` is where this server,
    whose root is ``root_dir``, opens that notebook; ``null`` when it cannot).
    """
    if task.payment is None:
        raise ValueError(f"task {task.id} is free: it needs no approval")
    order = task.payment.order
    deadline = datetime.fromtimestamp(order.deadline, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    spec = task.spec
    gpus = f"{spec.gpus} GPU" + ("s" if spec.gpus != 1 else "")
    decision = ledger.decide(order)
    return {
        "task_id": task.id,
        "label": spec.label,
        "account": task.account,
        "created_at": task.created_at,
        "order": order.model_dump(mode="json"),
        "max_price": format_eth(order.max_price_wei),
        "verifier_fee": format_eth(order.verifier_fee_wei),
        "total": format_eth(order.total_wei),
        "total_wei": order.total_wei,
        "deadline": deadline,
        "gpus": spec.gpus,
        "max_seconds": spec.max_seconds,
        "verify": order.verify.value,
        "bundle": spec.bundle,
        "bundle_bytes": spec.bundle_bytes,
        "bundle_size": size_text(spec.bundle_bytes) if spec.bundle_bytes else None,
        **origin_fields(spec, root_dir),
        "summary": (
            f"task {task.id}: at most {format_eth(order.total_wei)} for {gpus}, up to "
            f"{spec.max_seconds} s, verification {order.verify.value}, deadline {deadline}, "
            f"bundle {spec.bundle[:12]}…"
        ),
        "auto_approve": {"allowed": decision.approved, "reason": decision.reason},
    }


def _awaiting(task: Task) -> None:
    if task.state != TaskState.AWAITING_APPROVAL:
        raise ApiError(
            409, f"task {task.id} is {task.state.value}, not awaiting approval", "task_id"
        )
    if task.payment is None or task.account is None:
        raise ApiError(409, f"task {task.id} is free: it needs no approval", "task_id")


def _owner_link(wallet: Wallet, network: str, task: Task) -> Link:
    """The owner's unlocked account signed in to ``network``, or a 403/409 saying what to do."""
    owner = str(task.account)
    known = wallet.keystore.addresses()
    if not any(a.lower() == owner.lower() for a in known):
        raise ApiError(
            403,
            f"task {task.id} belongs to {owner}, which is not in this server's keystore "
            f"(it holds {', '.join(known) or 'no key'}); import that key or approve elsewhere",
            "task_id",
        )
    if not wallet.keystore.is_unlocked(owner):
        raise ApiError(409, f"{owner} is locked: {_UNLOCK}", "address")
    link = wallet.sessions.link(network, owner)
    if link is None:
        raise ApiError(409, f"{network} runs without a chain: its tasks need no approval")
    return link


def _fund_and_sign(wallet: Wallet, link: Link, task_id: str) -> None:
    """Under the link's lock: check the task again, the balance, then fund, sign and post."""
    with link.lock:
        task = fetch_task(link.http, link.network, task_id)
        _awaiting(task)
        assert task.payment is not None
        order = task.payment.order
        market = link.market
        account = wallet.keystore.account(link.address)
        try:
            if market.task(task_key(order.task_id)).status == TaskStatus.NONE:
                balance = int(market.w3.eth.get_balance(account.address))
                if balance < order.total_wei:
                    raise ApiError(402, _short(account.address, balance, order.total_wei))
            with coordinator_errors(link.network):
                approve_task(http=link.http, market=market, account=account, task=task)
        except MarketError as exc:
            raise ApiError(409, str(exc)) from exc
        except (Web3Exception, OSError) as exc:
            if "insufficient funds" in str(exc).lower():
                balance = int(market.w3.eth.get_balance(account.address))
                raise ApiError(402, _short(account.address, balance, order.total_wei)) from exc
            raise ApiError(502, f"the chain of {link.network} failed the funding: {exc}") from exc


def _short(address: str, balance: int, needed: int) -> str:
    return (
        f"{address} holds {format_eth(balance)} ({balance} wei); this order needs "
        f"{format_eth(needed)} ({needed} wei) in escrow plus gas: fund the account "
        "(on a devnet: POST /gensyn/api/faucet)"
    )


def read_task(wallet: Wallet, network: str, task_id: str) -> Task:
    """The task, read with the stored session, else with an account signed in here.

    A task with an owner is read by its owner's session only; the stored one
    (the kernel's) is usually it, but the owner may be another unlocked
    account of the keystore that is signed in to ``network``.
    """
    try:
        return fetch_task(wallet.http, network, task_id)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        for link in wallet.sessions.on(network):
            try:
                return fetch_task(link.http, network, task_id)
            except ApiError as again:
                if again.status_code != 404:
                    raise
        raise


def approve(wallet: Wallet, network: str, task_id: str) -> Task:
    """Fund the escrow of ``task_id`` and post its signed order; the task as it is then.

    Raises
    ------
    ApiError
        409 when the owner's key is locked (saying how to unlock), the task is
        not awaiting approval, or the contract refuses (``MarketError``'s
        words); 402 when the account cannot pay the escrow; 403 when the owner
        is not in the keystore; the coordinator's own 4xx otherwise.
    """
    task = read_task(wallet, network, task_id)
    _awaiting(task)
    for attempt in (1, 2):
        try:
            link = _owner_link(wallet, network, task)
            _fund_and_sign(wallet, link, task_id)
            break
        except KeystoreLocked:  # its unlock ran out just now
            raise ApiError(409, f"{task.account} is locked: {_UNLOCK}", "address") from None
        except ApiError as exc:
            if exc.status_code != 401 or attempt == 2:
                raise
            # the coordinator forgot the session (it restarted): sign in again
            wallet.sessions.drop(link)
    return fetch_task(link.http, network, task_id)


def reject(wallet: Wallet, network: str, task_id: str) -> Task:
    """Cancel a task that waits for approval (with the owner's session when unlocked).

    An escrow already funded for it (an approval that failed half-way) is
    refunded by :meth:`gensyn_jupyter.chain.Signer.refund_cancelled`.
    """
    task = read_task(wallet, network, task_id)
    _awaiting(task)
    owner = str(task.account)
    try:
        link = wallet.sessions.link(network, owner) if wallet.keystore.is_unlocked(owner) else None
    except KeystoreLocked:
        link = None  # cancelling needs no key
    stored = read_session_token(network)  # else the session the kernel submitted with
    headers = (
        {"Authorization": link.http.headers["Authorization"]}
        if link
        else ({"Authorization": f"Bearer {stored}"} if stored else None)
    )
    body = request_json(
        wallet.http, network, "POST", f"/v1/tasks/{task_id}/cancel", headers=headers
    )
    if link is not None:
        with link.lock:
            try:
                link.signer.refund_cancelled()
            except _REFUND_ERRORS as exc:
                wallet.log.warning("gensyn: refund after rejecting %s failed: %s", task_id, exc)
    return task_of(body, network)


def faucet(wallet: Wallet, network: str, address: str) -> Any:
    """The coordinator's ``POST /v1/faucet`` for ``address`` (404 where there is no faucet)."""
    return request_json(wallet.http, network, "POST", "/v1/faucet", json={"address": address})


def pending(wallet: Wallet, tasks: list[Task], root_dir: str | None = None) -> list[dict[str, Any]]:
    """The paid tasks among ``tasks``, described, with the current budget's decision."""
    wallet.policy()
    return [describe(task, wallet.ledger, root_dir) for task in tasks if task.payment is not None]
