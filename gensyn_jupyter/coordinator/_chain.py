"""The coordinator's link to the chain: the market contract and the operator key.

The operator key may only assign providers (the contract enforces it); it
cannot move anyone's money. Finalize and expire can be called by anyone:
the coordinator calls them as a keeper so tasks settle without waiting for
a user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from ..chain import Market, MarketEvent, OnchainTask
from ..protocol import ChainInfo, TxKind, TxRef

__all__ = ["ChainConfig", "ChainLink"]

_log = logging.getLogger("gensyn_jupyter.coordinator.chain")
_KEEPER_GAS = 300_000


@dataclass(frozen=True)
class ChainConfig:
    """How the coordinator reaches the chain.

    Parameters
    ----------
    rpc_url
        JSON-RPC endpoint of the node.
    market
        Address of the deployed ``TaskMarket``.
    operator_key
        Private key of the market's operator (read from the coordinator's own
        environment, never from a request).
    rate_wei_per_gpu_second
        Price quoted per GPU-second.
    faucet_key
        On a devnet, the key that funds ``POST /v1/faucet``; None elsewhere.
    faucet_wei
        What one faucet call sends.
    deadline_slack_s
        Added to a task's ``max_seconds`` for its on-chain deadline.
    poll_seconds
        How often the watcher reads new blocks.
    from_block
        First block to read events from on a fresh database.
    """

    rpc_url: str
    market: str
    operator_key: str
    rate_wei_per_gpu_second: int = 10**12
    faucet_key: str | None = None
    faucet_wei: int = 10 * 10**18
    deadline_slack_s: int = 600
    poll_seconds: float = 0.25
    from_block: int = 0


class ChainLink:
    """A web3 connection, the market, and the operator account."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.w3 = Web3(HTTPProvider(config.rpc_url, request_kwargs={"timeout": 10}))
        self.market = Market(w3=self.w3, address=config.market)
        self.operator: LocalAccount = Account.from_key(config.operator_key)
        self.faucet: LocalAccount | None = (
            Account.from_key(config.faucet_key) if config.faucet_key else None
        )
        self.chain_id = int(self.w3.eth.chain_id)
        self.min_stake = int(self.market.call("minStake"))
        self.challenge_window = int(self.market.call("challengeWindow"))
        self.referee = str(self.market.call("referee"))
        on_chain_operator = str(self.market.call("operator"))
        if on_chain_operator.lower() != self.operator.address.lower():
            raise ValueError(
                f"the operator key is for {self.operator.address} but the market at "
                f"{config.market} has operator {on_chain_operator}"
            )

    def info(self) -> ChainInfo:
        """What clients need to sign orders and pay: ``GET /v1/chain``."""
        return ChainInfo(
            rpc_url=self.config.rpc_url,
            chain_id=self.chain_id,
            market=self.market.address,
            operator=self.operator.address,
            min_stake_wei=self.min_stake,
            challenge_window_s=self.challenge_window,
            rate_wei_per_gpu_second=self.config.rate_wei_per_gpu_second,
            faucet=self.faucet is not None,
        )

    def bonded_stake(self, address: str) -> int:
        """The provider's stake that counts for assignment."""
        bonded, _unbonding, _until = self.market.call("stakeOf", Web3.to_checksum_address(address))
        return int(bonded)

    def task(self, key: bytes) -> OnchainTask:
        """The market's record of a task (status ``None`` when unknown)."""
        return self.market.task(key)

    def _send(
        self,
        kind: TxKind,
        sender: LocalAccount,
        function: str,
        *args: object,
        gas: int | None = None,
    ) -> TxRef:
        receipt = self.market.transact(sender, function, *args, gas=gas)
        return TxRef(
            kind=kind,
            hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block=receipt["blockNumber"],
        )

    def assign(
        self,
        key: bytes,
        provider: str,
        price: int,
        verifier: str | None = None,
        provider2: str | None = None,
    ) -> TxRef:
        """Assign ``provider`` (a replica ``provider2``; ``verifier``, paid its fee) at
        ``price`` per provider (operator only)."""
        zero = "0x" + "00" * 20
        return self._send(
            "assign",
            self.operator,
            "assign",
            key,
            Web3.to_checksum_address(provider),
            Web3.to_checksum_address(provider2) if provider2 else zero,
            Web3.to_checksum_address(verifier) if verifier else zero,
            price,
        )

    def reassign(
        self,
        key: bytes,
        provider: str,
        verifier: str | None,
        claim: tuple[int, bytes, int, str],
    ) -> TxRef:
        """Hand a lost provider's task over to ``provider`` (operator only).

        ``claim`` is the lost provider's signed progress: (step, leaf, amount
        in wei, signature); the contract checks the signature and pays that
        amount at finalize.
        """
        step, leaf, amount, signature = claim
        zero = "0x" + "00" * 20
        return self._send(
            "reassign",
            self.operator,
            "reassign",
            key,
            Web3.to_checksum_address(provider),
            Web3.to_checksum_address(verifier) if verifier else zero,
            step,
            leaf,
            amount,
            bytes.fromhex(signature.removeprefix("0x")),
        )

    # Keeper calls carry a fixed gas limit: estimating runs against the latest
    # block, whose timestamp on an idle automining devnet is still that of the
    # commit, so an estimate would revert "window open" forever. Sent as is,
    # the transaction is mined in a new block with the current time.
    def finalize(self, key: bytes) -> TxRef:
        """Pay out a committed task whose challenge window closed (anyone may)."""
        return self._send("finalize", self.operator, "finalize", key, gas=_KEEPER_GAS)

    def expire(self, key: bytes) -> TxRef:
        """Refund a task whose deadline passed without a commit (anyone may)."""
        return self._send("expire", self.operator, "expire", key, gas=_KEEPER_GAS)

    def events(self, from_block: int, to_block: int) -> list[MarketEvent]:
        """The market's events in the block range."""
        return self.market.events(from_block=from_block, to_block=to_block)

    def block_number(self) -> int:
        """The latest block."""
        return int(self.w3.eth.block_number)

    def fund(self, address: str, wei: int | None = None) -> str:
        """Send devnet coins from the faucet key; returns the transaction hash."""
        if self.faucet is None:
            raise RuntimeError("no faucet on this network")
        tx: dict[str, Any] = {
            "to": Web3.to_checksum_address(address),
            "value": wei if wei is not None else self.config.faucet_wei,
            "nonce": self.w3.eth.get_transaction_count(self.faucet.address, "pending"),
            "chainId": self.chain_id,
            "gas": 21_000,
            "gasPrice": self.w3.eth.gas_price,
        }
        signed = self.faucet.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        return "0x" + bytes(tx_hash).hex()
