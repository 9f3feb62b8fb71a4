"""JSON-RPC values of the embedded node: hex quantities in and out, blocks, transactions, receipts.

Shapes follow what anvil answers (lower-case hex addresses, ``0x``-prefixed quantities
without leading zeros), so web3.py formats both nodes' answers the same way.
"""

from __future__ import annotations

from typing import Any

from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth_typing import Address

__all__ = [
    "RpcError",
    "base_fee",
    "effective_gas_price",
    "format_block",
    "format_receipts",
    "format_transaction",
    "hex_bytes",
    "hex_int",
    "legacy_chain_id",
    "parse_address",
    "parse_bytes",
    "parse_int",
]

_Json = dict[str, Any]


class RpcError(Exception):
    """A JSON-RPC error answer: ``{"code": code, "message": message, "data": data}``.

    Parameters
    ----------
    code
        The JSON-RPC error code (``-32601`` unknown method, ``-32602`` bad params,
        ``3`` execution reverted, ``-32003`` transaction rejected, ...).
    message
        Human-readable message.
    data
        Optional ``0x`` hex data (the revert data of a reverted call).
    """

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> _Json:
        """The ``error`` member of a JSON-RPC answer."""
        error: _Json = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def hex_int(value: int) -> str:
    """A JSON-RPC quantity: ``0x`` and hex digits without leading zeros."""
    return hex(value)


def hex_bytes(value: bytes) -> str:
    """JSON-RPC data: ``0x`` and two hex digits per byte."""
    return "0x" + value.hex()


def _hex32(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def parse_int(value: object, name: str = "quantity") -> int:
    """A quantity from a ``0x`` hex string, a decimal string or a JSON number.

    Raises
    ------
    RpcError
        ``-32602`` when ``value`` is no quantity.
    """
    if isinstance(value, bool):
        raise RpcError(-32602, f"invalid {name}: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value[:2] in ("0x", "0X") else int(value)
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid {name}: {value!r}")


def parse_bytes(value: object, name: str = "data") -> bytes:
    """Bytes from ``0x`` hex data.

    Raises
    ------
    RpcError
        ``-32602`` when ``value`` is not ``0x``-prefixed hex of whole bytes.
    """
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid {name}: {value!r}")


def parse_address(value: object) -> Address:
    """A 20-byte address from its hex form (any case)."""
    address = parse_bytes(value, "address")
    if len(address) != 20:
        raise RpcError(-32602, f"invalid address: {value!r}")
    return Address(address)


def _to_field(tx: SignedTransactionAPI) -> str | None:
    return hex_bytes(tx.to) if tx.to else None


def base_fee(header: BlockHeaderAPI) -> int:
    """The header's base fee per gas (0 before London)."""
    return header.base_fee_per_gas or 0


def legacy_chain_id(tx: SignedTransactionAPI) -> int | None:
    """The EIP-155 chain id of a legacy transaction (``None`` when unprotected)."""
    legacy: Any = tx
    v = int(legacy.v)
    return (v - 35) // 2 if v >= 35 else None


def effective_gas_price(tx: SignedTransactionAPI, fee: int) -> int:
    """What one unit of gas of ``tx`` costs in a block with base fee ``fee``."""
    if tx.type_id in (None, 0, 1):
        return int(tx.gas_price)
    return int(min(tx.max_fee_per_gas, fee + tx.max_priority_fee_per_gas))


def format_transaction(
    tx: SignedTransactionAPI, header: BlockHeaderAPI | None, index: int | None
) -> _Json:
    """``eth_getTransactionByHash``'s object; ``header`` is the block that holds ``tx``."""
    type_id = tx.type_id or 0
    out: _Json = {"type": hex_int(type_id)}
    chain_id = tx.chain_id if type_id else legacy_chain_id(tx)
    if chain_id is not None:
        out["chainId"] = hex_int(chain_id)
    out["nonce"] = hex_int(tx.nonce)
    out["gas"] = hex_int(tx.gas)
    if type_id in (0, 1):
        out["gasPrice"] = hex_int(tx.gas_price)
    else:
        out["maxFeePerGas"] = hex_int(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = hex_int(tx.max_priority_fee_per_gas)
    out["to"] = _to_field(tx)
    out["value"] = hex_int(tx.value)
    if type_id:
        out["accessList"] = [
            {"address": hex_bytes(address), "storageKeys": [_hex32(k) for k in keys]}
            for address, keys in tx.access_list
        ]
    out["input"] = hex_bytes(tx.data)
    out["r"] = hex_int(tx.r)
    out["s"] = hex_int(tx.s)
    if type_id:
        out["yParity"] = hex_int(tx.y_parity)
        out["v"] = hex_int(tx.y_parity)
    else:
        legacy: Any = tx
        out["v"] = hex_int(legacy.v)
    out["hash"] = hex_bytes(tx.hash)
    out["blockHash"] = hex_bytes(header.hash) if header is not None else None
    out["blockNumber"] = hex_int(header.block_number) if header is not None else None
    out["transactionIndex"] = hex_int(index) if index is not None else None
    out["from"] = hex_bytes(tx.sender)
    if header is not None:
        out["gasPrice"] = hex_int(effective_gas_price(tx, base_fee(header)))
        out["blockTimestamp"] = hex_int(header.timestamp)
    return out


def format_receipts(block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> list[_Json]:
    """``eth_getTransactionReceipt``'s objects for every transaction of ``block``, in order.

    Each receipt's ``logs`` are the block's logs with block-wide ``logIndex``.
    """
    header = block.header
    out: list[_Json] = []
    cumulative = 0
    log_index = 0
    for index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
        gas_used = receipt.gas_used - cumulative
        cumulative = receipt.gas_used
        logs = []
        for log in receipt.logs:
            logs.append(
                {
                    "address": hex_bytes(log.address),
                    "topics": [_hex32(topic) for topic in log.topics],
                    "data": hex_bytes(log.data),
                    "blockHash": hex_bytes(header.hash),
                    "blockNumber": hex_int(header.block_number),
                    "blockTimestamp": hex_int(header.timestamp),
                    "transactionHash": hex_bytes(tx.hash),
                    "transactionIndex": hex_int(index),
                    "logIndex": hex_int(log_index),
                    "removed": False,
                }
            )
            log_index += 1
        created = None if tx.to else generate_contract_address(tx.sender, tx.nonce)
        out.append(
            {
                "type": hex_int(tx.type_id or 0),
                "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
                "cumulativeGasUsed": hex_int(receipt.gas_used),
                "logs": logs,
                "logsBloom": _hex_bloom(receipt.bloom),
                "transactionHash": hex_bytes(tx.hash),
                "transactionIndex": hex_int(index),
                "blockHash": hex_bytes(header.hash),
                "blockNumber": hex_int(header.block_number),
                "gasUsed": hex_int(gas_used),
                "effectiveGasPrice": hex_int(effective_gas_price(tx, base_fee(header))),
                "from": hex_bytes(tx.sender),
                "to": _to_field(tx),
                "contractAddress": hex_bytes(created) if created is not None else None,
                "blobGasPrice": "0x1",
                # anvil answers a JSON number here (and hex in logs and transactions)
                "blockTimestamp": header.timestamp,
            }
        )
    return out


def _hex_bloom(bloom: int) -> str:
    return "0x" + bloom.to_bytes(256, "big").hex()


def format_block(block: BlockAPI, size: int, full: bool, receipts_free: bool = False) -> _Json:
    """``eth_getBlockByNumber``'s object; ``full`` puts transaction objects, not hashes."""
    header = block.header
    out: _Json = {
        "hash": hex_bytes(header.hash),
        "parentHash": hex_bytes(header.parent_hash),
        "sha3Uncles": hex_bytes(header.uncles_hash),
        "miner": hex_bytes(header.coinbase),
        "stateRoot": hex_bytes(header.state_root),
        "transactionsRoot": hex_bytes(header.transaction_root),
        "receiptsRoot": hex_bytes(header.receipt_root),
        "logsBloom": _hex_bloom(header.bloom),
        "difficulty": hex_int(header.difficulty),
        "number": hex_int(header.block_number),
        "gasLimit": hex_int(header.gas_limit),
        "gasUsed": hex_int(header.gas_used),
        "timestamp": hex_int(header.timestamp),
        "extraData": hex_bytes(header.extra_data),
        "mixHash": hex_bytes(header.mix_hash),
        "nonce": hex_bytes(header.nonce),
        "baseFeePerGas": hex_int(base_fee(header)),
    }
    for rpc_name, attr in (
        ("withdrawalsRoot", "withdrawals_root"),
        ("parentBeaconBlockRoot", "parent_beacon_block_root"),
        ("requestsHash", "requests_hash"),
    ):
        value = getattr(header, attr, None)
        if isinstance(value, bytes):
            out[rpc_name] = hex_bytes(value)
    for rpc_name, attr in (("blobGasUsed", "blob_gas_used"), ("excessBlobGas", "excess_blob_gas")):
        number = getattr(header, attr, None)
        if isinstance(number, int):
            out[rpc_name] = hex_int(number)
    out["totalDifficulty"] = "0x0"
    out["size"] = hex_int(size)
    out["uncles"] = []
    out["transactions"] = [
        format_transaction(tx, header, i) if full else hex_bytes(tx.hash)
        for i, tx in enumerate(block.transactions)
    ]
    out["withdrawals"] = []
    return out
