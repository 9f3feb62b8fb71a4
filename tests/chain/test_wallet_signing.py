"""EIP-712 task orders: what the signer produces and what a relay refuses, and why."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.main import KeyAPI
from eth_utils.crypto import keccak

from gensyn_jupyter.chain._signing import (
    OrderRejected,
    check_order,
    recover_order_signer,
    sign_order,
)
from gensyn_jupyter.protocol import SignedOrder, TaskOrder, VerifyMode, task_order_typed_data

ALICE: LocalAccount = Account.from_key("0x" + "11" * 32)
MALLORY: LocalAccount = Account.from_key("0x" + "22" * 32)
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _order(submitter: str = ALICE.address, **changes: object) -> TaskOrder:
    fields: dict[str, object] = {
        "task_id": "task-0001",
        "spec_hash": "ab" * 32,
        "max_price_wei": 3 * 10**17,
        "verifier_fee_wei": 10**16,
        "verify": VerifyMode.SPOT,
        "deadline": 1_900_000_000,
        "nonce": 7,
        "chain_id": 31337,
        "contract": MARKET,
        "submitter": submitter,
    }
    fields.update(changes)
    return TaskOrder.model_validate(fields)


def _sign_raw(account: LocalAccount, order: TaskOrder) -> SignedOrder:
    """Sign an order's typed data with any key, as a wallet would, without sign_order's check."""
    signed = account.sign_message(encode_typed_data(full_message=task_order_typed_data(order)))
    return SignedOrder(order=order, signature="0x" + bytes(signed.signature).hex())


def _with_signature(signed: SignedOrder, raw: bytes) -> SignedOrder:
    return SignedOrder(order=signed.order, signature="0x" + raw.hex())


def _solidity_digest(order: TaskOrder) -> bytes:
    """The EIP-712 digest as the market contract computes it (written out by hand)."""
    domain_type = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    order_type = keccak(
        text="TaskOrder(bytes32 taskId,bytes32 specHash,uint256 maxPrice,uint256 verifierFee,"
        "uint8 verification,uint64 deadline,uint64 nonce,address submitter)"
    )
    domain = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                domain_type,
                keccak(text="GensynTaskMarket"),
                keccak(text="1"),
                order.chain_id,
                order.contract,
            ],
        )
    )
    struct = keccak(
        encode(
            [
                "bytes32",
                "bytes32",
                "bytes32",
                "uint256",
                "uint256",
                "uint8",
                "uint64",
                "uint64",
                "address",
            ],
            [
                order_type,
                keccak(text=order.task_id),
                bytes.fromhex(order.spec_hash),
                order.max_price_wei,
                order.verifier_fee_wei,
                1,
                order.deadline,
                order.nonce,
                order.submitter,
            ],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


def test_a_signed_order_passes_the_check_and_recovers_its_submitter() -> None:
    signed = sign_order(ALICE, _order())
    assert signed.order == _order()
    assert signed.funding_tx is None
    check_order(signed, chain_id=31337, contract=MARKET, expected_submitter=ALICE.address)
    check_order(signed, chain_id=31337, contract=MARKET.lower())
    assert recover_order_signer(signed) == ALICE.address


def test_the_signature_verifies_against_the_digest_the_contract_computes() -> None:
    order = _order()
    raw = bytes.fromhex(sign_order(ALICE, order).signature[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    assert v in (27, 28) and s <= N // 2
    public = KeyAPI.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(
        _solidity_digest(order)
    )
    assert public.to_checksum_address() == ALICE.address


def test_an_order_for_another_chain_is_refused_with_what_to_do() -> None:
    signed = sign_order(ALICE, _order(chain_id=1))
    with pytest.raises(OrderRejected) as info:
        check_order(signed, chain_id=31337, contract=MARKET)
    assert info.value.reason == (
        "order is for chain 1 but this network is chain 31337: sign it again on the right network"
    )
    assert str(info.value) == info.value.reason


def test_an_order_for_another_contract_names_both_contracts() -> None:
    signed = sign_order(ALICE, _order(contract=OTHER_MARKET))
    with pytest.raises(OrderRejected) as info:
        check_order(signed, chain_id=31337, contract=MARKET)
    assert OTHER_MARKET in info.value.reason and MARKET in info.value.reason
    assert "sign it again" in info.value.reason


def test_a_signature_from_another_key_is_refused_naming_the_real_signer() -> None:
    forged = _sign_raw(MALLORY, _order(submitter=ALICE.address))
    assert recover_order_signer(forged) == MALLORY.address
    with pytest.raises(OrderRejected) as info:
        check_order(forged, chain_id=31337, contract=MARKET)
    assert info.value.reason == (
        f"order was signed by {MALLORY.address} but names {ALICE.address} as submitter: "
        "sign it with the submitter's wallet"
    )


def test_an_order_changed_after_signing_no_longer_verifies() -> None:
    signed = sign_order(ALICE, _order())
    raised = SignedOrder(order=_order(max_price_wei=10**19), signature=signed.signature)
    with pytest.raises(OrderRejected, match=r"but names .* as submitter"):
        check_order(raised, chain_id=31337, contract=MARKET)


def test_an_order_signed_by_someone_other_than_the_task_owner_is_refused() -> None:
    signed = sign_order(MALLORY, _order(submitter=MALLORY.address))
    with pytest.raises(OrderRejected) as info:
        check_order(signed, chain_id=31337, contract=MARKET, expected_submitter=ALICE.address)
    assert info.value.reason == (
        f"order was signed by {MALLORY.address} but this task belongs to {ALICE.address}: "
        "approve it with that wallet"
    )


def test_sign_order_refuses_a_key_that_is_not_the_submitter() -> None:
    with pytest.raises(OrderRejected, match=f"the key is {MALLORY.address}"):
        sign_order(MALLORY, _order(submitter=ALICE.address))


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda raw: raw[:64] + bytes([5]), "recovery byte v=5"),
        (lambda raw: bytes(64) + raw[64:], "malformed"),
        (
            lambda raw: (
                raw[:32]
                + (N - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big")
                + bytes([55 - raw[64]])
            ),
            "low-s",
        ),
        (lambda raw: b"\xff" * 64 + raw[64:], "malformed"),
    ],
    ids=["bad-v", "zero-r-s", "high-s-malleated", "r-off-curve"],
)
def test_a_malformed_signature_is_refused_and_says_sign_again(
    tamper: Callable[[bytes], bytes], why: str
) -> None:
    signed = sign_order(ALICE, _order())
    bad = _with_signature(signed, tamper(bytes.fromhex(signed.signature[2:])))
    with pytest.raises(OrderRejected) as info:
        check_order(bad, chain_id=31337, contract=MARKET)
    assert why in info.value.reason
    assert info.value.reason.startswith("the order's signature is malformed")
    assert info.value.reason.endswith("sign the order again")


def test_the_high_s_twin_of_a_valid_signature_still_recovers_alice_but_is_refused() -> None:
    # The malleated signature is mathematically valid; refusing it keeps the
    # relay consistent with contracts that only accept canonical signatures.
    signed = sign_order(ALICE, _order())
    raw = bytes.fromhex(signed.signature[2:])
    s_twin = N - int.from_bytes(raw[32:64], "big")
    twin = raw[:32] + s_twin.to_bytes(32, "big") + bytes([55 - raw[64]])
    digest = _solidity_digest(signed.order)
    public = KeyAPI.Signature(vrs=(twin[64] - 27, int.from_bytes(twin[:32], "big"), s_twin))
    assert public.recover_public_key_from_msg_hash(digest).to_checksum_address() == ALICE.address
    with pytest.raises(OrderRejected, match="low-s"):
        recover_order_signer(_with_signature(signed, twin))


def test_a_v_of_zero_or_one_is_accepted_like_27_or_28() -> None:
    signed = sign_order(ALICE, _order())
    raw = bytes.fromhex(signed.signature[2:])
    assert recover_order_signer(_with_signature(signed, raw[:64] + bytes([raw[64] - 27]))) == (
        ALICE.address
    )
