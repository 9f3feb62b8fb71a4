"""Signed progress: what a provider claims for its work up to a checkpoint.

At each checkpoint of a paid run the provider signs, with its own key, the
hash the contract's progress hash of ``(taskId, step, leaf, amount)`` as an EIP-191
personal message. If the provider is lost, the operator hands the task over
with ``TaskMarket.reassign``, which pays the lost provider exactly the amount
it signed for the checkpoint the next provider resumes from (see
docs/faults.md). The hash is computed here exactly as the contract does, so
a provider signs without a call to the node.
"""

from __future__ import annotations

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

__all__ = ["progress_hash", "recover_progress_signer", "sign_progress"]

_TAG = keccak(text="gensyn.TaskMarket.progress.v1")


def progress_hash(
    *, chain_id: int, market: str, task_key: bytes, step: int, leaf: bytes, amount_wei: int
) -> bytes:
    """The 32 bytes a provider signs for a checkpoint (``TaskMarket._progressHash``)."""
    return keccak(
        encode(
            ["bytes32", "uint256", "address", "bytes32", "uint256", "bytes32", "uint256"],
            [_TAG, chain_id, to_checksum_address(market), task_key, step, leaf, amount_wei],
        )
    )


def sign_progress(account: LocalAccount, digest: bytes) -> str:
    """The provider's EIP-191 signature of ``digest`` (65 bytes, hex with 0x)."""
    signed = account.sign_message(encode_defunct(primitive=digest))
    return "0x" + bytes(signed.signature).hex()


def recover_progress_signer(digest: bytes, signature: str) -> str | None:
    """Who signed ``digest`` (checksummed), or None when the signature does not recover."""
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 65:
            return None
        signer: str = Account.recover_message(encode_defunct(primitive=digest), signature=raw)
        return to_checksum_address(signer)
    except (ValueError, BadSignature, ValidationError):
        return None
