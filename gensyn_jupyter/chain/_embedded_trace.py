"""``debug_traceTransaction`` with anvil's ``callTracer``, top frame only.

Enough to read the revert data of a mined transaction that failed (what
``_market`` asks for): the transaction is run again on its block's parent state,
after the transactions before it in the block.
"""

from __future__ import annotations

import contextlib
from typing import Any

from eth._utils.address import generate_contract_address
from eth.exceptions import Revert
from eth_abi.abi import decode as abi_decode

from ._embedded_chain import EmbeddedChain
from ._embedded_codec import RpcError, hex_bytes, hex_int

__all__ = ["trace_transaction"]

_ERROR_SELECTOR = bytes.fromhex("08c379a0")


def trace_transaction(
    node: EmbeddedChain, tx_hash: bytes, options: object = None
) -> dict[str, Any]:
    """The ``callTracer`` frame of a mined transaction, shaped like anvil's (no sub-calls).

    Raises
    ------
    RpcError
        ``-32602`` for another tracer, ``-32000`` for an unknown transaction.
    """
    tracer = options.get("tracer") if isinstance(options, dict) else None
    if tracer != "callTracer":
        raise RpcError(-32602, "debug_traceTransaction: only {'tracer': 'callTracer'} is supported")
    found = node.locate(tx_hash)
    if found is None:
        raise RpcError(-32000, f"transaction not found: {hex_bytes(tx_hash)}")
    block = node.block_by_hash(found[0])
    index = found[1]
    parent = node.header_at(block.number - 1)
    vm = node.chain.get_vm(block.header.copy(state_root=parent.state_root, gas_used=0))
    state = vm.state
    for earlier in block.transactions[:index]:
        state.apply_transaction(earlier)
    tx = block.transactions[index]
    computation = state.apply_transaction(tx)
    receipt = node.get_receipt(tx_hash)
    assert receipt is not None
    to = tx.to or generate_contract_address(tx.sender, tx.nonce)
    frame: dict[str, Any] = {
        "from": hex_bytes(tx.sender),
        "gas": hex_int(max(0, tx.gas - tx.intrinsic_gas)),
        "gasUsed": receipt["gasUsed"],
        "to": hex_bytes(to),
        "input": hex_bytes(tx.data),
    }
    output = bytes(computation.output)
    if output:
        frame["output"] = hex_bytes(output)
    if computation.is_error:
        error = computation.error
        frame["error"] = "execution reverted" if isinstance(error, Revert) else str(error)
        if output[:4] == _ERROR_SELECTOR:
            with contextlib.suppress(Exception):
                frame["revertReason"] = abi_decode(["string"], output[4:])[0]
    frame["value"] = hex_int(tx.value)
    frame["type"] = "CALL" if tx.to else "CREATE"
    return frame
