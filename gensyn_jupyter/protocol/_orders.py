"""The EIP-712 ``TaskOrder`` a submitter signs to approve and fund a task.

Pure data: the typed-data dictionary built here is what a browser wallet
(``eth_signTypedData_v4``) or the signer process signs; ``chain/`` signs and
recovers, the coordinator checks.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ._states import VerifyMode

__all__ = [
    "ORDER_DOMAIN_NAME",
    "ORDER_DOMAIN_VERSION",
    "Address",
    "SignedOrder",
    "TaskOrder",
    "spec_hash_bytes32",
    "task_key",
    "task_order_typed_data",
]

ORDER_DOMAIN_NAME = "GensynTaskMarket"
ORDER_DOMAIN_VERSION = "1"

Address = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$")]
"""A 20-byte hex address (any case; compare lower-cased)."""

_HEX32 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_VERIFY_CODES = {VerifyMode.NONE: 0, VerifyMode.SPOT: 1, VerifyMode.REPLICATE: 2}


def task_key(task_id: str) -> bytes:
    """The task's id on chain: ``keccak256(utf-8 task id)``, 32 bytes."""
    return keccak(text=task_id)


def spec_hash_bytes32(spec_hash: str) -> bytes:
    """A sha256 hex digest (with or without ``0x``) as 32 bytes."""
    if not _HEX32.match(spec_hash):
        raise ValueError(f"spec hash must be 32 bytes of hex, got {spec_hash!r}")
    return bytes.fromhex(spec_hash.removeprefix("0x"))


class TaskOrder(BaseModel):
    """What the submitter approves: this task, at most this much, under these rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(min_length=1, max_length=64)
    spec_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the task's spec")
    max_price_wei: int = Field(ge=0, lt=2**96)
    verifier_fee_wei: int = Field(ge=0, lt=2**96)
    verify: VerifyMode = VerifyMode.NONE
    deadline: int = Field(gt=0, lt=2**64, description="unix seconds")
    nonce: int = Field(ge=0, lt=2**64)
    chain_id: int = Field(gt=0)
    contract: Address
    submitter: Address

    @property
    def total_wei(self) -> int:
        """What the escrow must hold: the maximum price plus the verifier fee."""
        return self.max_price_wei + self.verifier_fee_wei


class SignedOrder(BaseModel):
    """A :class:`TaskOrder` with the submitter's EIP-712 signature and the funding transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: TaskOrder
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")
    funding_tx: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{64}$")


def task_order_typed_data(order: TaskOrder) -> dict[str, Any]:
    """The full EIP-712 message (``eth_signTypedData_v4`` shape) for ``order``."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TaskOrder": [
                {"name": "taskId", "type": "bytes32"},
                {"name": "specHash", "type": "bytes32"},
                {"name": "maxPrice", "type": "uint256"},
                {"name": "verifierFee", "type": "uint256"},
                {"name": "verification", "type": "uint8"},
                {"name": "deadline", "type": "uint64"},
                {"name": "nonce", "type": "uint64"},
                {"name": "submitter", "type": "address"},
            ],
        },
        "primaryType": "TaskOrder",
        "domain": {
            "name": ORDER_DOMAIN_NAME,
            "version": ORDER_DOMAIN_VERSION,
            "chainId": order.chain_id,
            "verifyingContract": order.contract,
        },
        "message": {
            "taskId": "0x" + task_key(order.task_id).hex(),
            "specHash": "0x" + order.spec_hash,
            "maxPrice": order.max_price_wei,
            "verifierFee": order.verifier_fee_wei,
            "verification": _VERIFY_CODES[order.verify],
            "deadline": order.deadline,
            "nonce": order.nonce,
            "submitter": order.submitter,
        },
    }
