"""A typed web3 client of the ``TaskMarket`` escrow contract.

Transactions are signed locally (``LocalAccount``) and sent raw, so the node
needs no unlocked accounts; a revert, whether at gas estimation or in a mined
transaction, raises :class:`~gensyn_jupyter.chain._errors.MarketError` decoded
from the revert data. See ``docs/contracts.md`` for the rules the contract
enforces.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.types import FilterParams, LogReceipt, RPCEndpoint, TxParams, TxReceipt

from ._artifacts import Artifact, load_artifact
from ._errors import MarketError, TaskStatus, decode_revert, revert_data

__all__ = ["Market", "MarketConfig", "MarketError", "MarketEvent", "OnchainTask", "TaskStatus"]

_ZERO = "0x" + "00" * 20
_RECEIPT_TIMEOUT = 120.0
_NONCE_LOCK = threading.Lock()
_NONCE_RETRIES = 5
_NONCE_CLASH = ("nonce too low", "replacement transaction underpriced")
"""Held from reading the pending nonce until the signed transaction is sent."""

_HELD = frozenset(
    {
        TaskStatus.OPEN,
        TaskStatus.ASSIGNED,
        TaskStatus.COMMITTED,
        TaskStatus.CHALLENGED,
        TaskStatus.DISPUTED,
    }
)


@dataclass(frozen=True)
class MarketConfig:
    """The constructor parameters of a market (fixed for its lifetime).

    Attributes
    ----------
    operator
        Assigns providers to tasks; cannot move money.
    referee
        Resolves challenges and disputes.
    treasury
        Receives its share of slashed stake.
    min_stake
        Bonded stake (wei) a provider needs to be assigned; also what fraud slashes.
    min_bond
        Smallest challenge bond (wei).
    unbonding_delay
        Seconds between ``requestUnstake`` and ``withdrawStake``.
    challenge_window
        Seconds after the commit during which anyone may challenge.
    """

    operator: str
    referee: str
    treasury: str
    min_stake: int
    min_bond: int
    unbonding_delay: int
    challenge_window: int


@dataclass(frozen=True)
class OnchainTask:
    """A task as the contract holds it (``getTask``).

    Unset roles (no second provider, no verifier, no challenger) read as ``None``;
    ``submitter`` is the zero address only when there is no task. Checkpoint roots
    and output hashes are not stored on chain (they are in the ``TaskCommitted``
    events, see :meth:`Market.events`); ``replica_root`` is the first root of a
    replicated task.

    Attributes
    ----------
    deadline, challenge_end
        Unix seconds; ``challenge_end`` is 0 until the window opens.
    max_payment, verifier_fee
        What the submitter escrowed (wei).
    price
        Per provider, set at assignment (0 before).
    amount_due, amount_due2
        What each provider claimed in its commit (0 before it commits).
    bond
        The challenger's bond while a challenge is open (0 after it is resolved).
    """

    task_id: bytes
    status: TaskStatus
    submitter: str
    deadline: int
    challenge_end: int
    max_payment: int
    verifier_fee: int
    provider: str | None
    provider2: str | None
    verifier: str | None
    price: int
    amount_due: int
    amount_due2: int
    challenger: str | None
    bond: int
    replica_root: bytes
    replicated: bool
    provider_committed: bool
    provider2_committed: bool

    @property
    def escrow(self) -> int:
        """Wei the contract holds for this task now (zero once it is settled)."""
        return self.max_payment + self.verifier_fee if self.status in _HELD else 0


@dataclass(frozen=True)
class MarketEvent:
    """One decoded ``TaskMarket`` event."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


def _address_or_none(value: str) -> str | None:
    return None if int(value, 16) == 0 else to_checksum_address(value)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value


class Market:
    """Client of one deployed ``TaskMarket``.

    Parameters
    ----------
    w3
        A connected :class:`web3.Web3`.
    address
        The contract's address.
    """

    def __init__(self, *, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address: ChecksumAddress = to_checksum_address(address)
        self.artifact: Artifact = load_artifact("TaskMarket")
        self._contract = w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self._chain_id: int | None = None
        self._events = {
            bytes(event_abi_to_log_topic(cast(Any, entry))): str(entry["name"])
            for entry in self.artifact.abi
            if entry.get("type") == "event"
        }

    # ------------------------------------------------------------------ deploy

    @classmethod
    def deploy(cls, *, w3: Web3, deployer: LocalAccount, config: MarketConfig) -> Market:
        """Deploy a new market and return its client.

        Raises
        ------
        MarketError
            When the constructor reverts (e.g. ``ZeroAddress``).
        """
        artifact = load_artifact("TaskMarket")
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(
            to_checksum_address(config.operator),
            to_checksum_address(config.referee),
            to_checksum_address(config.treasury),
            config.min_stake,
            config.min_bond,
            config.unbonding_delay,
            config.challenge_window,
        ).data_in_transaction
        receipt = _send(w3, deployer, None, data, 0, None, artifact.abi, int(w3.eth.chain_id))
        address = receipt.get("contractAddress")
        if not address:
            raise RuntimeError("deployment receipt has no contract address")
        return cls(w3=w3, address=address)

    # ------------------------------------------------------------------ calls

    def transact(
        self,
        sender: LocalAccount,
        function: str,
        *args: Any,
        value: int = 0,
        gas: int | None = None,
    ) -> TxReceipt:
        """Sign and send a call of ``function(*args)`` and wait for its receipt.

        Parameters
        ----------
        sender
            Signs the transaction (locally).
        function
            The contract function's name, e.g. ``"createTask"``.
        *args
            Its arguments, in ABI order (``bytes`` for ``bytes32``).
        value
            Wei sent along.
        gas
            Gas limit; estimated (plus 20 %) when not given. Giving it skips the
            estimate, so a reverting call is mined and fails (receipt status 0).

        Raises
        ------
        MarketError
            When the call reverts, at estimation or once mined.
        """
        data = self.artifact.function(function).encode(args)
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return _send(
            self.w3, sender, self.address, data, value, gas, self.artifact.abi, self._chain_id
        )

    def call(self, function: str, *args: Any) -> Any:
        """The result of the view (or a dry run of) ``function(*args)`` at the latest block.

        Raises
        ------
        MarketError
            When the call reverts.
        """
        abi_function = self.artifact.function(function)
        request = {"to": self.address, "data": abi_function.encode(args)}
        # Straight to the provider: one request, and the revert data as the node sent it.
        response: Any = self.w3.provider.make_request(RPCEndpoint("eth_call"), [request, "latest"])
        error = response.get("error")
        if error is not None:
            data = revert_data(Exception(error))
            if data is None:
                raise RuntimeError(f"eth_call {function}: {error}")
            raise decode_revert(data, self.artifact.abi)
        return abi_function.decode(HexBytes(response["result"]))

    def task(self, task_id: bytes) -> OnchainTask:
        """The task stored under ``task_id`` (status ``NONE`` when there is none)."""
        raw = self.call("getTask", task_id)
        names = [c["name"] for c in self._output_components("getTask")]
        fields = dict(zip(names, raw, strict=True))
        flags = int(fields["flags"])
        committed1, committed2 = bool(flags & 1), bool(flags & 2)
        return OnchainTask(
            task_id=bytes(task_id),
            status=TaskStatus(fields["status"]),
            submitter=to_checksum_address(fields["submitter"]),
            deadline=int(fields["deadline"]),
            challenge_end=int(fields["challengeEnd"]),
            max_payment=int(fields["maxPayment"]),
            verifier_fee=int(fields["verifierFee"]),
            provider=_address_or_none(fields["provider"]),
            provider2=_address_or_none(fields["provider2"]),
            verifier=_address_or_none(fields["verifier"]),
            price=int(fields["price"]),
            # until a provider commits, the contract keeps the price in its amountDue
            amount_due=int(fields["amountDue"]) if committed1 else 0,
            amount_due2=int(fields["amountDue2"]) if committed2 else 0,
            challenger=_address_or_none(fields["challenger"]),
            bond=int(fields["bond"]),
            replica_root=bytes(fields["replicaRoot"]),
            replicated=bool(flags & 4),
            provider_committed=committed1,
            provider2_committed=committed2,
        )

    def config(self) -> MarketConfig:
        """The market's roles and parameters, read from the chain."""
        return MarketConfig(
            operator=self.call("operator"),
            referee=self.call("referee"),
            treasury=self.call("treasury"),
            min_stake=self.call("minStake"),
            min_bond=self.call("minBond"),
            unbonding_delay=self.call("unbondingDelay"),
            challenge_window=self.call("challengeWindow"),
        )

    def events(
        self, *, from_block: int, to_block: int | None = None, task_id: bytes | None = None
    ) -> list[MarketEvent]:
        """Every ``TaskMarket`` event in ``[from_block, to_block]`` (latest when ``None``).

        Parameters
        ----------
        from_block, to_block
            The block range, both ends included.
        task_id
            Only the events of this task (every task event has the task id as its
            first indexed argument).

        Returns
        -------
        list[MarketEvent]
            Sorted by ``(block_number, log_index)``; bytes as ``bytes``, addresses
            checksummed.
        """
        params: dict[str, Any] = {
            "address": self.address,
            "fromBlock": from_block,
            "toBlock": "latest" if to_block is None else to_block,
        }
        if task_id is not None:
            params["topics"] = [None, "0x" + bytes(task_id).hex()]
        logs = self.w3.eth.get_logs(cast(FilterParams, params))
        found = [self._decode_log(log) for log in logs]
        events = [event for event in found if event is not None]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    # ------------------------------------------------------------------ helpers

    def _decode_log(self, log: LogReceipt) -> MarketEvent | None:
        topics = log["topics"]
        name = self._events.get(bytes(topics[0])) if topics else None
        if name is None:
            return None
        decoded = self._contract.events[name]().process_log(log)
        return MarketEvent(
            name=name,
            args={key: _plain(value) for key, value in decoded["args"].items()},
            block_number=int(log["blockNumber"]),
            tx_hash=log["transactionHash"].to_0x_hex(),
            log_index=int(log["logIndex"]),
        )

    def _output_components(self, function: str) -> list[dict[str, Any]]:
        for entry in self.artifact.abi:
            if entry.get("type") == "function" and entry.get("name") == function:
                components: list[dict[str, Any]] = entry["outputs"][0]["components"]
                return components
        raise KeyError(function)


def _fees(w3: Web3) -> dict[str, int]:
    """EIP-1559 fees (twice the next base fee plus the node's tip), else a gas price."""
    try:
        base = int(w3.eth.fee_history(1, "latest")["baseFeePerGas"][-1])
        tip = int(w3.eth.max_priority_fee)
    except Exception:
        return {"gasPrice": int(w3.eth.gas_price)}
    return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}


def _raise_decoded(exc: Exception, abi: list[dict[str, Any]]) -> None:
    data = revert_data(exc)
    if data is not None:
        raise decode_revert(data, abi) from exc


def _send(
    w3: Web3,
    sender: LocalAccount,
    to: ChecksumAddress | None,
    data: str,
    value: int,
    gas: int | None,
    abi: list[dict[str, Any]],
    chain_id: int,
) -> TxReceipt:
    tx: dict[str, Any] = {"from": sender.address, "data": data, "value": value}
    if to is not None:
        tx["to"] = to
    if gas is None:
        try:
            estimate = int(w3.eth.estimate_gas(cast(TxParams, tx)))
        except Exception as exc:
            _raise_decoded(exc, abi)
            raise
        gas = estimate + estimate // 5
    tx.update(_fees(w3), gas=gas, chainId=chain_id)
    with _NONCE_LOCK:  # one process; another process with the same key may still race
        for attempt in range(_NONCE_RETRIES):
            tx["nonce"] = w3.eth.get_transaction_count(sender.address, "pending")
            signed = sender.sign_transaction(tx)
            try:
                tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
                break
            except Exception as exc:
                text = str(exc).lower()
                if attempt + 1 < _NONCE_RETRIES and any(m in text for m in _NONCE_CLASH):
                    # e.g. two coordinator replicas sharing the operator key sent the
                    # same nonce: read the pending count again and resend
                    time.sleep(0.02 * (attempt + 1))
                    continue
                _raise_decoded(exc, abi)
                raise
    receipt = w3.eth.wait_for_transaction_receipt(
        tx_hash, timeout=_RECEIPT_TIMEOUT, poll_latency=0.005
    )
    if receipt["status"] != 1:
        raise decode_revert(
            _failed_tx_revert_data(w3, receipt, tx), abi, tx_hash=tx_hash.to_0x_hex()
        )
    return receipt


def _failed_tx_revert_data(w3: Web3, receipt: TxReceipt, tx: dict[str, Any]) -> bytes:
    """The revert data of a mined, failed transaction: its trace, else a replay."""
    tx_hash = receipt["transactionHash"]
    try:
        trace: Any = w3.provider.make_request(
            RPCEndpoint("debug_traceTransaction"),
            [tx_hash.to_0x_hex(), {"tracer": "callTracer"}],
        )
        output = trace.get("result", {}).get("output")
        if isinstance(output, str) and output.startswith("0x"):
            return bytes.fromhex(output[2:])
    except Exception:
        pass
    replay = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
    try:
        w3.eth.call(cast(TxParams, replay), block_identifier=receipt["blockNumber"] - 1)
    except Exception as exc:
        data = revert_data(exc)
        if data is not None:
            return data
    return b""
