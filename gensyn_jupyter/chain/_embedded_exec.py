"""Running code on the embedded chain: sending transactions, ``eth_call``, gas estimates, fees.

Calls and estimates run free of charge (a base fee of zero, like anvil's ``eth_call`` without
fee fields) on the state of the block asked for; a revert answers like anvil, code ``3`` with
the revert data, so web3 raises the same ``ContractCustomError`` on both nodes.
"""

from __future__ import annotations

from typing import Any

from eth.abc import ComputationAPI, SignedTransactionAPI, StateAPI
from eth.exceptions import OutOfGas, Revert
from eth.vm.spoof import SpoofTransaction
from eth_abi.abi import decode as abi_decode
from eth_typing import Address
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError

from ._embedded_chain import EmbeddedChain, rejection
from ._embedded_codec import (
    RpcError,
    base_fee,
    effective_gas_price,
    hex_bytes,
    hex_int,
    legacy_chain_id,
    parse_address,
    parse_bytes,
    parse_int,
)

__all__ = [
    "PRIORITY_FEE",
    "call",
    "estimate_gas",
    "fee_history",
    "send_raw_transaction",
    "send_transaction",
]

PRIORITY_FEE = 10**9
"""The tip ``eth_maxPriorityFeePerGas`` suggests (1 gwei, as anvil)."""

_Json = dict[str, Any]
_ZERO = b"\x00" * 20
_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")
_PANICS = {
    0x01: "assertion failed",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "storage byte array incorrectly encoded",
    0x31: "pop on empty array",
    0x32: "array out-of-bounds access",
    0x41: "out of memory",
    0x51: "called a zero-initialized variable of internal function type",
}


def _chain_id_of(tx: SignedTransactionAPI) -> int | None:
    return tx.chain_id if tx.type_id else legacy_chain_id(tx)


def send_raw_transaction(node: EmbeddedChain, raw: bytes) -> bytes:
    """Run a signed transaction in a block of its own; its hash.

    Raises
    ------
    RpcError
        ``-32602`` when it does not decode; ``-32003`` when the node refuses it (chain id,
        nonce, funds, fees), worded like anvil. A transaction that reverts is mined with
        status 0, as on anvil.
    """
    chain = node.chain
    try:
        tx = chain.get_vm().get_transaction_builder().decode(raw)
        tx.sender  # noqa: B018 - recovers the signer, fails on a bad signature
    except Exception as exc:
        raise RpcError(-32602, "Failed to decode transaction") from exc
    tx_chain_id = _chain_id_of(tx)
    if tx_chain_id is not None and tx_chain_id != node.chain_id:
        raise RpcError(-32003, "invalid chain id for signer")
    if tx.gas < tx.intrinsic_gas:
        raise RpcError(-32000, "intrinsic gas too low")
    node.stamp_pending()
    try:
        chain.apply_transaction(tx)
    except ValidationError as exc:
        raise rejection(exc) from exc
    node.mine()
    return bytes(tx.hash)


def send_transaction(node: EmbeddedChain, request: _Json) -> bytes:
    """``eth_sendTransaction`` from a dev account: fill nonce, gas and fees, sign, send."""
    sender = parse_address(request.get("from"))
    account = next((a for a in node.accounts if parse_address(a.address) == sender), None)
    if account is None:
        raise RpcError(-32602, "No Signer available")
    state = node.state("latest")
    tx: _Json = {
        "chainId": node.chain_id,
        "nonce": parse_int(request.get("nonce", state.get_nonce(Address(sender)))),
        "value": parse_int(request.get("value", 0)),
        "data": hex_bytes(parse_bytes(request.get("input", request.get("data", "0x")))),
        "gas": parse_int(request["gas"]) if request.get("gas") else estimate_gas(node, request),
    }
    if request.get("to"):
        tx["to"] = to_checksum_address(parse_address(request["to"]))
    if request.get("gasPrice") is not None:
        tx["gasPrice"] = parse_int(request["gasPrice"])
    else:
        tip = parse_int(request.get("maxPriorityFeePerGas", PRIORITY_FEE))
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = parse_int(
            request.get("maxFeePerGas", base_fee(node.chain.header) + tip)
        )
    signed = account.sign_transaction(tx)
    return send_raw_transaction(node, bytes(signed.raw_transaction))


def _prepare(node: EmbeddedChain, request: _Json, tag: object) -> tuple[StateAPI, Any, bytes]:
    """A state to run ``request`` on, the unsigned transaction, and its sender."""
    chain = node.chain
    number = node.block_number(tag)
    header = node.header_at(number)
    if number == node.head().block_number:
        # the latest block's environment (as anvil), with dev-method edits to the state
        header = header.copy(state_root=chain.header.state_root)
    vm = chain.get_vm(header.copy(base_fee_per_gas=0, gas_used=0))
    state = vm.state
    sender = parse_address(request["from"]) if request.get("from") else _ZERO
    builder: Any = vm.get_transaction_builder()
    unsigned = builder.new_unsigned_dynamic_fee_transaction(
        chain_id=node.chain_id,
        nonce=state.get_nonce(Address(sender)),
        max_priority_fee_per_gas=0,
        max_fee_per_gas=0,
        gas=parse_int(request["gas"]) if request.get("gas") else header.gas_limit,
        to=parse_address(request["to"]) if request.get("to") else b"",
        value=parse_int(request.get("value", 0)),
        data=parse_bytes(request.get("input", request.get("data", "0x"))),
        access_list=(),
    )
    return state, unsigned, sender


def _run(state: StateAPI, unsigned: Any, sender: bytes, gas: int | None = None) -> ComputationAPI:
    spoof: Any = SpoofTransaction(unsigned, from_=sender, **({} if gas is None else {"gas": gas}))
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(spoof)
    except ValidationError as exc:
        raise rejection(exc) from exc
    finally:
        state.revert(snapshot)


def _failure(computation: ComputationAPI) -> RpcError:
    error = computation.error
    if isinstance(error, Revert):
        data = bytes(computation.output)
        return RpcError(3, _revert_message(data), hex_bytes(data))
    if isinstance(error, OutOfGas):
        return RpcError(-32000, "out of gas")
    return RpcError(-32000, f"EVM error {type(error).__name__}: {error}".rstrip(": "))


def _revert_message(data: bytes) -> str:
    if not data:
        return "execution reverted"
    selector, payload = data[:4], data[4:]
    try:
        if selector == _ERROR_SELECTOR:
            return f"execution reverted: {abi_decode(['string'], payload)[0]}"
        if selector == _PANIC_SELECTOR:
            code = abi_decode(["uint256"], payload)[0]
            reason = _PANICS.get(code, "unknown panic code")
            return f"execution reverted: panic: {reason} ({code:#04x})"
    except Exception:
        pass
    # anvil shows the rest of the data as (lossy) text after the selector
    rest = f": {payload.decode(errors='replace')}" if payload else ""
    return f"execution reverted: custom error 0x{selector.hex()}{rest}"


def call(node: EmbeddedChain, request: _Json, tag: object = "latest") -> bytes:
    """``eth_call``: what running ``request`` on block ``tag`` returns.

    Raises
    ------
    RpcError
        Code ``3`` with the revert data when it reverts, ``-32000`` for other EVM errors.
    """
    state, unsigned, sender = _prepare(node, request, tag)
    computation = _run(state, unsigned, sender)
    if computation.is_error:
        raise _failure(computation)
    return bytes(computation.output)


def estimate_gas(node: EmbeddedChain, request: _Json, tag: object = "latest") -> int:
    """``eth_estimateGas``: the least gas with which ``request`` succeeds.

    Raises
    ------
    RpcError
        As :func:`call` when it fails even with all the gas allowed.
    """
    state, unsigned, sender = _prepare(node, request, tag)
    cap = int(unsigned.gas)
    computation = _run(state, unsigned, sender)
    if computation.is_error:
        if isinstance(computation.error, OutOfGas):
            raise RpcError(-32003, f"Out of gas: gas required exceeds allowance: {cap}")
        raise _failure(computation)
    intrinsic = int(unsigned.intrinsic_gas)
    used = intrinsic + computation.get_gas_used()

    def succeeds(gas: int) -> bool:
        return not _run(state, unsigned, sender, gas).is_error

    # At least what it used; a little more for the 63/64 rule and refund caps.
    low, high = max(used, intrinsic) - 1, cap
    probe = max(used, intrinsic)
    while probe < cap:
        if succeeds(probe):
            high = probe
            break
        low = probe
        probe = min(cap, probe + probe // 32 + 2300)
    while high - low > 1:
        middle = (low + high) // 2
        if succeeds(middle):
            high = middle
        else:
            low = middle
    return high


def fee_history(
    node: EmbeddedChain, count: object, newest: object, percentiles: list[float] | None
) -> _Json:
    """``eth_feeHistory``: base fees, gas used ratios and tip percentiles of recent blocks."""
    last = node.block_number(newest)
    # anvil answers a count of 0 as 1
    blocks = max(1, min(parse_int(count, "block count"), 1024, last + 1))
    first = last - blocks + 1
    chain = node.chain
    base_fees: list[str] = []
    ratios: list[float] = []
    rewards: list[list[str]] = []
    for number in range(first, last + 1):
        header = node.header_at(number)
        base_fees.append(hex_int(base_fee(header)))
        ratios.append(header.gas_used / header.gas_limit)
        if percentiles:
            rewards.append(_rewards(node, number, base_fee(header), percentiles))
    head = node.head().block_number
    following = chain.header if last == head else node.header_at(last + 1)
    base_fees.append(hex_int(base_fee(following)))
    out: _Json = {
        "oldestBlock": hex_int(first),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
        "baseFeePerBlobGas": ["0x1"] * len(base_fees),
        "blobGasUsedRatio": [0.0] * len(ratios),
    }
    if percentiles:
        out["reward"] = rewards
    return out


def _rewards(
    node: EmbeddedChain, number: int, base_fee: int, percentiles: list[float]
) -> list[str]:
    """The tip paid at each gas-weighted percentile of a block (0 for an empty block)."""
    block = node.block_at(number)
    receipts = node.receipts_at(number)
    tips = sorted(
        (effective_gas_price(tx, base_fee) - base_fee, int(receipt["gasUsed"], 16))
        for tx, receipt in zip(block.transactions, receipts, strict=True)
    )
    total = sum(gas for _, gas in tips)
    out = []
    for percentile in percentiles:
        threshold = total * percentile / 100
        cumulative, chosen = 0, 0
        for tip, gas in tips:
            chosen = tip
            cumulative += gas
            if cumulative >= threshold:
                break
        out.append(hex_int(chosen))
    return out
