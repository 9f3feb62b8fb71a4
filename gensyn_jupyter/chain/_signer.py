"""``gensyn signer``: approve and fund a signed-in account's tasks within a budget.

A headless wallet. It holds the key (from its own environment, never the
kernel's), signs in to the coordinator, and for every task of its account
that waits for approval: asks the budget policy, funds the escrow
(``createTask``), signs the EIP-712 order and posts it. It also refunds
cancelled escrows and withdraws refunds. Orders outside the budget wait for
a person (the sidebar panel).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from ..config import write_session
from ..protocol import (
    CoordinatorError,
    SignedOrder,
    Task,
    TaskState,
    raise_for_error,
    spec_hash_bytes32,
    task_key,
)
from ._budget import BudgetLedger, format_eth
from ._market import Market, MarketError, TaskStatus
from ._session import chain_info, sign_in
from ._signing import sign_order

__all__ = ["Signer", "approve_task"]


def approve_task(
    *, http: httpx.Client, market: Market, account: LocalAccount, task: Task
) -> SignedOrder:
    """Fund the escrow of ``task`` and post its signed order; the order as posted.

    Raises
    ------
    MarketError
        When the contract refuses the funding.
    protocol.CoordinatorError
        When the coordinator refuses the order (its message says why).
    """
    if task.payment is None:
        raise ValueError(f"task {task.id} is free: it needs no approval")
    order = task.payment.order
    key = task_key(order.task_id)
    funding_tx: str | None = None
    if market.task(key).status == TaskStatus.NONE:
        receipt = market.transact(
            account,
            "createTask",
            key,
            spec_hash_bytes32(order.spec_hash),
            order.max_price_wei,
            order.verifier_fee_wei,
            order.deadline,
            value=order.total_wei,
        )
        funding_tx = "0x" + bytes(receipt["transactionHash"]).hex()
    signed = sign_order(account, order).model_copy(update={"funding_tx": funding_tx})
    response = http.post(f"/v1/tasks/{task.id}/order", json=signed.model_dump(mode="json"))
    raise_for_error(response)
    return signed


class Signer:
    """The approval loop of one account on one network."""

    def __init__(
        self,
        *,
        network: str,
        account: LocalAccount,
        ledger: BudgetLedger,
        log: Callable[[str], None] = print,
        poll_seconds: float = 0.25,
    ) -> None:
        self.network = network.rstrip("/")
        self.account = account
        self.ledger = ledger
        self.poll_seconds = poll_seconds
        self._log = log
        self._http = httpx.Client(base_url=self.network, timeout=30.0)
        self._market: Market | None = None
        self._told: set[str] = set()
        self._refunded: set[str] = set()
        self._session_expires = 0.0

    @property
    def market(self) -> Market:
        """The market this network's coordinator names (after :meth:`connect`)."""
        if self._market is None:
            raise RuntimeError("the signer is not connected yet: call connect() first")
        return self._market

    def connect(self, stop: threading.Event | None = None, timeout: float = 60.0) -> None:
        """Read where the escrow lives, waiting up to ``timeout`` s for the coordinator.

        Raises
        ------
        ValueError
            When the network runs without a chain (nothing to sign).
        httpx.HTTPError
            When the coordinator does not answer in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = chain_info(self._http)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    raise
                time.sleep(0.2)
        if info is None:
            raise ValueError(f"{self.network} runs without a chain: there is nothing to sign")
        self._market = Market(
            w3=Web3(HTTPProvider(info.rpc_url, request_kwargs={"timeout": 10})),
            address=info.market,
        )

    def sign_in(self, *, store: bool = True) -> None:
        """Open a session; with ``store``, keep its token where the kernel finds it."""
        session = sign_in(self._http, self.account)
        self._http.headers["Authorization"] = f"Bearer {session.token}"
        self._session_expires = session.expires_at
        if store:
            write_session(
                self.network,
                token=session.token,
                address=session.address,
                expires_at=session.expires_at,
            )
        self._log(f"signed in to {self.network} as {session.address}")

    def _tasks(self, state: TaskState) -> list[Task]:
        response = self._http.get(
            "/v1/tasks", params={"state": state.value, "account": self.account.address}
        )
        raise_for_error(response)
        return [Task.model_validate(t) for t in response.json()]

    def approve(self, task_id: str) -> Task:
        """Approve one task by hand (no budget asked): fund, sign, post; the queued task.

        Raises
        ------
        ValueError
            When the task is free, not waiting for approval, or not this account's.
        MarketError, protocol.CoordinatorError
            When the chain or the coordinator refuses (their messages say why).
        """
        response = self._http.get(f"/v1/tasks/{task_id}")
        raise_for_error(response)
        task = Task.model_validate(response.json())
        if task.payment is None:
            raise ValueError(f"task {task_id} is free: it needs no approval")
        if task.state != TaskState.AWAITING_APPROVAL:
            raise ValueError(f"task {task_id} is {task.state.value}, not awaiting approval")
        owner = task.payment.order.submitter
        if owner.lower() != self.account.address.lower():
            raise ValueError(
                f"task {task_id} belongs to {owner}; this key is {self.account.address}"
            )
        approve_task(http=self._http, market=self.market, account=self.account, task=task)
        response = self._http.get(f"/v1/tasks/{task_id}")
        raise_for_error(response)
        return Task.model_validate(response.json())

    def approve_pending(self) -> int:
        """Approve every waiting task the budget allows; returns how many."""
        approved = 0
        for task in self._tasks(TaskState.AWAITING_APPROVAL):
            if task.payment is None:
                continue
            decision = self.ledger.decide(task.payment.order)
            if not decision.approved:
                if task.id not in self._told:
                    self._told.add(task.id)
                    self._log(f"{task.id} waits for a person: {decision.reason}")
                continue
            try:
                approve_task(http=self._http, market=self.market, account=self.account, task=task)
            except (MarketError, CoordinatorError) as exc:
                if task.id not in self._told:
                    self._told.add(task.id)
                    self._log(f"{task.id} could not be approved: {exc}")
                continue
            self.ledger.record(task.payment.order)
            approved += 1
            self._log(f"approved {task.id}: {format_eth(task.payment.order.total_wei)} in escrow")
        return approved

    def refund_cancelled(self) -> None:
        """Take back the escrow of cancelled tasks no provider was assigned to."""
        for task in self._tasks(TaskState.CANCELLED):
            payment = task.payment
            if payment is None or task.id in self._refunded or payment.outcome is not None:
                continue
            key = task_key(task.id)
            if self.market.task(key).status != TaskStatus.OPEN:
                self._refunded.add(task.id)
                continue
            try:
                self.market.transact(self.account, "cancelTask", key)
                self._log(f"cancelled escrow of {task.id}: {format_eth(payment.order.total_wei)}")
            except MarketError as exc:
                self._log(f"could not cancel the escrow of {task.id}: {exc}")
            self._refunded.add(task.id)

    def withdraw(self) -> int:
        """Withdraw refunds credited by the contract; returns the wei withdrawn."""
        credit = int(self.market.call("credits", self.account.address))
        if credit > 0:
            self.market.transact(self.account, "withdraw")
        return credit

    def run(self, stop: threading.Event) -> None:
        """Approve, refund and withdraw until ``stop`` is set."""
        self.connect(stop)
        self.sign_in()
        last_sweep = 0.0
        while not stop.is_set():
            try:
                if time.time() > self._session_expires - 600:
                    self.sign_in()
                self.approve_pending()
                if time.monotonic() - last_sweep > 1.0:
                    last_sweep = time.monotonic()
                    self.refund_cancelled()
                    self.withdraw()
            except (httpx.HTTPError, CoordinatorError, MarketError, ValueError) as exc:
                self._log(f"signer: {exc}; retrying")
                if isinstance(exc, CoordinatorError) and exc.status == 401:
                    self._session_expires = 0.0
                stop.wait(1.0)
            stop.wait(self.poll_seconds)

    def close(self) -> None:
        self._http.close()
