"""EIP-712 signing and checking of :class:`~gensyn_jupyter.protocol.TaskOrder`.

The signer (browser wallet, keystore of the server extension, or a headless
signer process) signs an order with :func:`sign_order`; whoever relays or
funds it checks it with :func:`check_order` before any money moves.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError

from ..protocol._orders import SignedOrder, TaskOrder, task_order_typed_data

__all__ = ["OrderRejected", "check_order", "recover_order_signer", "sign_order"]

# secp256k1 group order; a canonical signature has s <= n / 2 (EIP-2).
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_RESIGN = "sign the order again"


class OrderRejected(ValueError):
    """A signed order that must not be relayed or funded.

    Parameters
    ----------
    reason
        What is wrong and what to do about it, in words a user can act on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _show(address: str) -> str:
    try:
        return to_checksum_address(address)
    except ValueError:
        return repr(address)


def _signable(order: TaskOrder) -> SignableMessage:
    return encode_typed_data(full_message=task_order_typed_data(order))


def sign_order(account: LocalAccount, order: TaskOrder) -> SignedOrder:
    """Sign ``order`` with ``account`` (EIP-712, ``eth_signTypedData_v4``).

    Parameters
    ----------
    account
        The submitter's key; its address must be ``order.submitter``.
    order
        The order to approve.

    Returns
    -------
    SignedOrder
        The order with a 65-byte ``0x`` hex signature (``r || s || v``, v 27/28),
        without a funding transaction.

    Raises
    ------
    OrderRejected
        If ``account`` is not the order's submitter: nobody else's signature
        would be accepted.
    """
    if account.address.lower() != order.submitter.lower():
        raise OrderRejected(
            f"this order names {_show(order.submitter)} as submitter but the key "
            f"is {account.address}: sign it with the submitter's wallet"
        )
    signed = account.sign_message(_signable(order))
    return SignedOrder(order=order, signature="0x" + bytes(signed.signature).hex())


def _check_signature_form(signature: str) -> None:
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if len(raw) != 65:
        raise OrderRejected(
            f"the order's signature is malformed ({len(raw)} bytes, expected 65): {_RESIGN}"
        )
    if raw[64] not in (0, 1, 27, 28):
        raise OrderRejected(
            f"the order's signature is malformed (recovery byte v={raw[64]}, "
            f"expected 27 or 28, or 0 or 1): {_RESIGN}"
        )
    s = int.from_bytes(raw[32:64], "big")
    if s > _SECP256K1_N // 2:
        raise OrderRejected(
            f"the order's signature is malformed (not in canonical low-s form, "
            f"which the contract refuses): {_RESIGN}"
        )


def recover_order_signer(signed: SignedOrder) -> str:
    """The address whose key produced ``signed.signature`` over ``signed.order``.

    Parameters
    ----------
    signed
        A signed order.

    Returns
    -------
    str
        The signer's EIP-55 checksum address.

    Raises
    ------
    OrderRejected
        If the signature is malformed (wrong length, bad recovery byte, high s,
        or not a point on the curve).
    """
    _check_signature_form(signed.signature)
    try:
        address: str = Account.recover_message(
            _signable(signed.order), signature=bytes.fromhex(signed.signature[2:])
        )
    except (BadSignature, ValidationError, ValueError) as exc:
        raise OrderRejected(f"the order's signature is malformed ({exc}): {_RESIGN}") from exc
    return to_checksum_address(address)


def check_order(
    signed: SignedOrder,
    *,
    chain_id: int,
    contract: str,
    expected_submitter: str | None = None,
) -> None:
    """Check that ``signed`` may be relayed and funded on this network.

    Parameters
    ----------
    signed
        The signed order.
    chain_id
        The chain id of the network the order will be used on.
    contract
        The address of the network's task market contract.
    expected_submitter
        The task's owner, where known: the order must be signed by this address.

    Raises
    ------
    OrderRejected
        With a reason naming what is wrong: the order is for another chain or
        contract, its signature is malformed, it was signed by someone other
        than its submitter, or by someone other than the expected submitter.
    """
    order = signed.order
    if order.chain_id != chain_id:
        raise OrderRejected(
            f"order is for chain {order.chain_id} but this network is chain {chain_id}: "
            "sign it again on the right network"
        )
    if order.contract.lower() != contract.lower():
        raise OrderRejected(
            f"order is for the market contract {_show(order.contract)} but this "
            f"network's market is {_show(contract)}: sign it again on the right "
            "network"
        )
    signer = recover_order_signer(signed)
    submitter = _show(order.submitter)
    if signer != submitter:
        raise OrderRejected(
            f"order was signed by {signer} but names {submitter} as submitter: "
            "sign it with the submitter's wallet"
        )
    if expected_submitter is not None and signer.lower() != expected_submitter.lower():
        raise OrderRejected(
            f"order was signed by {signer} but this task belongs to "
            f"{_show(expected_submitter)}: approve it with that wallet"
        )
