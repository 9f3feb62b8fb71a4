"""A provider's side of the escrow: its own key, its stake, its commits, its earnings.

The key comes from the provider's own environment (``GENSYN_PRIVATE_KEY`` or
a keystore); the coordinator never sees it. The provider signs in with it,
stakes, commits each paid result on chain and withdraws what it earned.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from ..chain import Market, MarketError, progress_hash, sign_progress
from ..protocol import ChainInfo, Lease, ProgressClaim, ResultManifest, output_hash

__all__ = ["Payout", "amount_due", "checkpoint_root", "output_hash"]


def amount_due(lease: Lease, duration_s: float) -> int:
    """What the provider charges: GPU-seconds used times the rate, at most the agreed price."""
    payment = lease.task.payment
    if payment is None:
        return 0
    used = math.ceil(max(0.0, duration_s) * lease.task.spec.gpus * payment.rate_wei_per_gpu_second)
    cap = payment.price_wei if payment.price_wei is not None else payment.order.max_price_wei
    return min(used, cap)


def checkpoint_root(manifest: ResultManifest) -> bytes:
    """The Merkle root of the run's checkpoints; the output hash when it has none
    (a failed or cancelled run, or ``--checkpoint-every 0``)."""
    if manifest.commitment is not None:
        return bytes.fromhex(manifest.commitment.root[2:])
    return output_hash(manifest)


class Payout:
    """Stake, commit and withdraw for one provider account."""

    def __init__(
        self, *, account: LocalAccount, chain: ChainInfo, log: Callable[[str], None]
    ) -> None:
        self.account = account
        self.chain = chain
        self._log = log
        self._w3 = Web3(HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 10}))
        self._market = Market(w3=self._w3, address=chain.market)
        self._lock = threading.Lock()

    def ensure_stake(self) -> None:
        """Top the bonded stake up to the market's minimum (from the provider's balance)."""
        bonded, _unbonding, _until = self._market.call("stakeOf", self.account.address)
        missing = self.chain.min_stake_wei - int(bonded)
        if missing <= 0:
            return
        balance = self._w3.eth.get_balance(self.account.address)
        if balance < missing:
            self._log(
                f"cannot stake: {self.account.address} holds {balance} wei, the market needs "
                f"{missing} more wei of stake; paid tasks will not be offered to it"
            )
            return
        self._market.transact(self.account, "stake", value=missing)
        self._log(f"staked {missing} wei as {self.account.address}")

    def claim(self, lease: Lease, step: int, leaf: str, worked_s: float) -> ProgressClaim | None:
        """The signed claim for the work up to a checkpoint (``worked_s`` into this lease).

        If this provider is lost, the operator hands the task over on chain with
        it and this provider is paid that amount at settlement (docs/faults.md).
        """
        payment = lease.task.payment
        if payment is None:
            return None
        amount = amount_due(lease, worked_s)
        digest = progress_hash(
            chain_id=self.chain.chain_id,
            market=self.chain.market,
            task_key=bytes.fromhex(payment.task_key[2:]),
            step=step,
            leaf=bytes.fromhex(leaf[2:]),
            amount_wei=amount,
        )
        return ProgressClaim(amount_wei=amount, signature=sign_progress(self.account, digest))

    def commit(self, lease: Lease, manifest: ResultManifest) -> str | None:
        """Commit the result of a paid lease on chain; the transaction hash, or None on refusal."""
        payment = lease.task.payment
        if payment is None:
            return None
        key = bytes.fromhex(payment.task_key[2:])
        digest = output_hash(manifest)
        root = checkpoint_root(manifest)
        due = amount_due(lease, manifest.duration_s)
        try:
            with self._lock:
                receipt = self._market.transact(self.account, "commit", key, root, digest, due)
        except MarketError as exc:
            self._log(f"commit of {lease.task.id} refused on chain: {exc}")
            return None
        self._log(f"committed {lease.task.id} on chain: {due} wei due")
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def challenge(self, key: bytes) -> str:
        """Challenge a committed task with the market's minimum bond; the transaction hash."""
        bond = int(self._market.call("minBond"))
        with self._lock:
            receipt = self._market.transact(self.account, "challenge", key, value=bond)
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def resolve(self, key: bytes, cheater: str | None) -> str:
        """The referee's ruling on chain: ``cheater`` slashed, or None to reject the challenge."""
        who = Web3.to_checksum_address(cheater) if cheater else "0x" + "00" * 20
        with self._lock:
            receipt = self._market.transact(self.account, "resolve", key, who)
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def withdraw(self) -> int:
        """Withdraw earned credit, if any; returns the wei withdrawn."""
        credit = int(self._market.call("credits", self.account.address))
        if credit <= 0:
            return 0
        with self._lock:
            self._market.transact(self.account, "withdraw")
        return credit
