"""Fixtures of the TaskMarket tests: one real anvil per session, a market per test.

The session deploys one market and stakes two providers; every test runs
between ``evm_snapshot`` and ``evm_revert``, so tests see the same start and
leave nothing behind. The ``ledger`` fixture sends transactions, counts the gas
each account paid (``gasUsed * effectiveGasPrice``) and checks every account's
balance change and the contract's accounting at the end of the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from gensyn_jupyter.chain._devchain import Devchain, start_anvil
from gensyn_jupyter.chain._errors import decode_revert, revert_data
from gensyn_jupyter.chain._market import Market, MarketConfig, MarketError, OnchainTask

ETH = 10**18
MIN_STAKE = 2 * ETH
MIN_BOND = ETH // 10
UNBONDING = 7 * 24 * 3600
WINDOW = 3600
STAKE = 3 * ETH
"""Bonded stake of provider and provider2 at the start of every test."""
ZERO = "0x" + "00" * 20
ROLES = (
    "deployer",
    "operator",
    "referee",
    "treasury",
    "submitter",
    "provider",
    "provider2",
    "verifier",
    "challenger",
    "stranger",
)
REENTRANT = Path(__file__).parent / "artifacts" / "Reentrant.json"


@dataclass(frozen=True)
class Numbers:
    """Numbers the tests compute expectations from."""

    eth: int = ETH
    min_stake: int = MIN_STAKE
    min_bond: int = MIN_BOND
    unbonding: int = UNBONDING
    window: int = WINDOW
    stake: int = STAKE
    zero: str = ZERO
    slash: int = MIN_STAKE
    penalty: int = MIN_STAKE // 10


class Actors:
    """The ten dev accounts by role: ``actors.submitter`` is a ``LocalAccount``."""

    def __init__(self, accounts: list[LocalAccount]) -> None:
        self.by_role = dict(zip(ROLES, accounts, strict=True))

    def __getattr__(self, role: str) -> LocalAccount:
        try:
            return self.by_role[role]
        except KeyError:
            raise AttributeError(role) from None


def rpc(w3: Web3, method: str, params: list[Any] | None = None) -> Any:
    reply: Any = w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def invariant(w3: Web3, market: Market) -> tuple[int, int]:
    """(contract balance, escrow + stake + bonds + credits)."""
    counters = sum(
        market.call(name) for name in ("totalEscrow", "totalStake", "totalBonds", "totalCredits")
    )
    return w3.eth.get_balance(market.address), counters


class Ledger:
    """Sends transactions for the test and keeps the books of everyone involved.

    ``change(role)`` is an account's balance change since the test began, not
    counting the gas it paid; ``check(**expected)`` asserts it for every account
    (roles not named must be unchanged) and that the contract's balance equals
    its counters.
    """

    def __init__(self, w3: Web3, market: Market, actors: Actors) -> None:
        self.w3 = w3
        self.market = market
        self.actors = actors
        self.accounts: dict[str, str] = {r: a.address for r, a in actors.by_role.items()}
        self.before = {r: w3.eth.get_balance(a) for r, a in self.accounts.items()}
        self.contract_before = w3.eth.get_balance(market.address)
        self.gas_paid = dict.fromkeys(self.accounts, 0)

    def track(self, role: str, address: str) -> None:
        """Follow one more account (e.g. a contract deployed by the test)."""
        self.accounts[role] = address
        self.before[role] = self.w3.eth.get_balance(address)
        self.gas_paid[role] = 0

    def role_of(self, account: LocalAccount) -> str:
        return next(r for r, a in self.actors.by_role.items() if a.address == account.address)

    def send(self, account: LocalAccount, function: str, *args: Any, value: int = 0) -> TxReceipt:
        receipt = self.market.transact(account, function, *args, value=value)
        self.paid_gas(account, receipt)
        return receipt

    def send_to(
        self, account: LocalAccount, contract: Contract, function: str, *args: Any, value: int = 0
    ) -> TxReceipt:
        """Sign and send a call to another contract (e.g. the malicious receiver).

        A revert raises :class:`MarketError`, decoded with the market's and that
        contract's errors (a forwarded call bubbles the market's revert data up).
        """
        fn = contract.functions[function](*args)
        tx: dict[str, Any] = {"from": account.address, "value": value}
        try:
            built = fn.build_transaction(cast(Any, tx))
        except Exception as exc:
            data = revert_data(exc)
            if data is None:
                raise
            raise decode_revert(data, [*self.market.artifact.abi, *contract.abi]) from exc
        built["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
        signed = account.sign_transaction(built)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.005)
        self.paid_gas(account, receipt)
        assert receipt["status"] == 1
        return receipt

    def deploy(self, account: LocalAccount, artifact: dict[str, Any]) -> Contract:
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        built = factory.constructor().build_transaction(
            cast(
                Any,
                {
                    "from": account.address,
                    "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                },
            )
        )
        signed = account.sign_transaction(built)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.005)
        self.paid_gas(account, receipt)
        address = receipt["contractAddress"]
        assert address is not None
        return self.w3.eth.contract(address=address, abi=artifact["abi"])

    def paid_gas(self, account: LocalAccount, receipt: TxReceipt) -> None:
        self.gas_paid[self.role_of(account)] += receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def refused(
        self,
        name: str,
        account: LocalAccount,
        function: str,
        *args: Any,
        value: int = 0,
        contract: Contract | None = None,
    ) -> MarketError:
        """Assert that the call reverts with error ``name``; nothing is mined or paid."""
        block = self.w3.eth.block_number
        with pytest.raises(MarketError) as caught:
            if contract is None:
                self.send(account, function, *args, value=value)
            else:
                self.send_to(account, contract, function, *args, value=value)
        assert caught.value.name == name, str(caught.value)
        assert self.w3.eth.block_number == block
        return caught.value

    def change(self, role: str) -> int:
        now = self.w3.eth.get_balance(self.accounts[role])
        return now - self.before[role] + self.gas_paid[role]

    def contract_change(self) -> int:
        return self.w3.eth.get_balance(self.market.address) - self.contract_before

    def credit(self, role: str) -> int:
        return int(self.market.call("credits", self.accounts[role]))

    def withdraw_all(self) -> None:
        """Every tracked account with a credit pulls it."""
        for role, account in self.actors.by_role.items():
            if self.credit(role):
                self.send(account, "withdraw")

    def check(self, *, contract: int | None = None, **expected: int) -> None:
        """Every account changed by exactly ``expected[role]`` (0 when not named)."""
        unknown = set(expected) - set(self.accounts)
        assert not unknown, f"unknown roles {unknown}"
        changes = {role: self.change(role) for role in self.accounts}
        wanted = {role: expected.get(role, 0) for role in self.accounts}
        assert changes == wanted
        if contract is not None:
            assert self.contract_change() == contract
        balance, counters = invariant(self.w3, self.market)
        assert balance == counters
        # wei is neither made nor lost: what left the accounts is in the contract
        assert sum(changes.values()) + self.contract_change() == 0

    def check_credits(self, **expected: int) -> None:
        """Unclaimed credit of every account (0 when not named)."""
        credits = {role: self.credit(role) for role in self.accounts}
        assert credits == {role: expected.get(role, 0) for role in self.accounts}


class Tasks:
    """Builds tasks in a given state with the standard numbers."""

    max_payment = ETH
    fee = ETH // 100
    price = ETH // 2
    due = ETH * 2 // 5

    def __init__(self, w3: Web3, ledger: Ledger, actors: Actors) -> None:
        self.w3 = w3
        self.ledger = ledger
        self.a = actors
        self._count = 0

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> None:
        rpc(self.w3, "evm_increaseTime", [seconds])
        rpc(self.w3, "evm_mine")

    def new_id(self) -> bytes:
        self._count += 1
        return Web3.keccak(text=f"task-{self._count}")

    def open(self, *, max_payment: int | None = None, fee: int | None = None) -> bytes:
        task_id = self.new_id()
        mp = self.max_payment if max_payment is None else max_payment
        fee = self.fee if fee is None else fee
        self.ledger.send(
            self.a.submitter,
            "createTask",
            task_id,
            b"\x5e" * 32,
            mp,
            fee,
            self.now() + 3600,
            value=mp + fee,
        )
        return task_id

    def assigned(self, *, replicated: bool = False, verifier: bool = True) -> bytes:
        task_id = self.open()
        self.ledger.send(
            self.a.operator,
            "assign",
            task_id,
            self.a.provider.address,
            self.a.provider2.address if replicated else ZERO,
            self.a.verifier.address if verifier else ZERO,
            self.price,
        )
        return task_id

    def committed(self, *, verifier: bool = True) -> bytes:
        task_id = self.assigned(verifier=verifier)
        self.ledger.send(self.a.provider, "commit", task_id, b"\xc0" * 32, b"\x0f" * 32, self.due)
        return task_id

    def task(self, task_id: bytes) -> OnchainTask:
        return self.ledger.market.task(task_id)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Devchain]:
    chain = start_anvil()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="session")
def chain_w3(anvil: Devchain) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


@pytest.fixture(scope="session")
def actors(anvil: Devchain) -> Actors:
    return Actors(anvil.accounts)


@pytest.fixture(scope="session")
def cfg() -> Numbers:
    return Numbers()


@pytest.fixture(scope="session")
def base_market(chain_w3: Web3, actors: Actors) -> Market:
    config = MarketConfig(
        operator=actors.operator.address,
        referee=actors.referee.address,
        treasury=actors.treasury.address,
        min_stake=MIN_STAKE,
        min_bond=MIN_BOND,
        unbonding_delay=UNBONDING,
        challenge_window=WINDOW,
    )
    market = Market.deploy(w3=chain_w3, deployer=actors.deployer, config=config)
    for provider in (actors.provider, actors.provider2):
        market.transact(provider, "stake", value=STAKE)
    return market


@pytest.fixture
def market(chain_w3: Web3, base_market: Market) -> Iterator[Market]:
    """The session's market, rolled back after the test."""
    snapshot = rpc(chain_w3, "evm_snapshot")
    try:
        yield base_market
        balance, counters = invariant(chain_w3, base_market)
        assert balance == counters, "contract balance != escrow + stake + bonds + credits"
    finally:
        assert rpc(chain_w3, "evm_revert", [snapshot]) is True


@pytest.fixture
def ledger(chain_w3: Web3, market: Market, actors: Actors) -> Ledger:
    return Ledger(chain_w3, market, actors)


@pytest.fixture
def tasks(chain_w3: Web3, ledger: Ledger, actors: Actors) -> Tasks:
    return Tasks(chain_w3, ledger, actors)


@pytest.fixture(scope="session")
def rpc_call() -> Callable[..., Any]:
    """``rpc_call(w3, method, params)``: a raw JSON-RPC call that raises on an error."""
    return rpc


@pytest.fixture
def reentrant_artifact() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REENTRANT.read_text())
    return data
