"""The embedded node's chain: eth-tester's py-evm backend, one block per transaction, like anvil.

Not thread-safe by itself: the JSON-RPC server holds :attr:`EmbeddedChain.lock` around every
call. Dev-time controls (clock offset, snapshots, balances) live in
:mod:`._embedded_dev`; this module has the chain, its blocks, and the ``eth_*`` reads.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth.abc import BlockAPI, BlockHeaderAPI, MiningChainAPI, StateAPI
from eth_tester.backends.pyevm.main import PyEVMBackend
from eth_typing import BlockNumber, Hash32
from eth_utils.address import to_canonical_address
from eth_utils.exceptions import ValidationError

from ._devchain import dev_accounts
from ._embedded_codec import (
    RpcError,
    format_block,
    format_receipts,
    format_transaction,
    hex_bytes,
    parse_address,
    parse_int,
)

__all__ = ["GAS_LIMIT", "EmbeddedChain", "rejection"]

GAS_LIMIT = 30_000_000
"""Block gas limit, anvil's default."""

_Json = dict[str, Any]
_LATEST_TAGS = (None, "latest", "pending", "safe", "finalized")
_NONCE = re.compile(r"Expected (\d+), but got (\d+)")


def rejection(exc: ValidationError) -> RpcError:
    """The JSON-RPC error for a transaction py-evm refuses, worded like anvil's."""
    text = str(exc)
    nonce = _NONCE.search(text)
    if nonce is not None:
        expected, got = (int(n) for n in nonce.groups())
        return RpcError(-32003, "nonce too low" if got < expected else "nonce too high")
    if "balance" in text or "cannot afford" in text:
        return RpcError(-32003, "Insufficient funds for gas * price + value")
    if "base fee" in text:
        return RpcError(-32003, "max fee per gas less than block base fee")
    if "exceeds gas limit" in text:
        return RpcError(-32000, "intrinsic gas too high -- tx.gas_limit > env.block.gas_limit")
    if "intrinsic" in text.lower() or "Insufficient gas" in text:
        return RpcError(-32000, "intrinsic gas too low")
    return RpcError(-32003, text)


class EmbeddedChain:
    """A py-evm chain funded like anvil's: the accounts of ``DEV_MNEMONIC``, a chain id of choice.

    Parameters
    ----------
    chain_id
        Reported by ``eth_chainId``, seen by the ``CHAINID`` opcode, required of signed
        transactions (EIP-155).
    accounts
        How many dev accounts get ``balance_eth`` at genesis.
    balance_eth
        Genesis balance of each dev account, in ether.
    """

    def __init__(self, *, chain_id: int = 31337, accounts: int = 10, balance_eth: int = 10_000):
        if chain_id <= 0:
            raise ValueError(f"chain id must be positive, not {chain_id}")
        self.chain_id = chain_id
        self.accounts = dev_accounts(accounts)
        self.lock = threading.RLock()
        self.offset = 0
        """Seconds added to the wall clock for new blocks' timestamps (``evm_increaseTime``)."""
        genesis_state = {
            to_canonical_address(account.address): {
                "balance": balance_eth * 10**18,
                "nonce": 0,
                "code": b"",
                "storage": {},
            }
            for account in self.accounts
        }
        params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": GAS_LIMIT})
        self.backend = PyEVMBackend(genesis_parameters=params, genesis_state=genesis_state)
        # eth-tester hard-codes its chain id on a chain class it makes for this backend alone;
        # py-evm reads it from there for every VM it makes (the CHAINID opcode included),
        # also after reverting to genesis, which makes a new chain of that class.
        type(self.backend.chain).chain_id = chain_id
        self._tx_index: dict[bytes, tuple[int, bytes, int]] = {}
        self._receipts: dict[bytes, list[_Json]] = {}

    @property
    def chain(self) -> MiningChainAPI:
        """The py-evm chain; its ``header`` is the pending (next) block's."""
        chain: MiningChainAPI = self.backend.chain
        return chain

    def header_at(self, number: int) -> BlockHeaderAPI:
        """The header of canonical block ``number``."""
        return self.chain.get_canonical_block_header_by_number(BlockNumber(number))

    def block_at(self, number: int) -> BlockAPI:
        """Canonical block ``number``."""
        return self.chain.get_canonical_block_by_number(BlockNumber(number))

    def block_by_hash(self, block_hash: bytes) -> BlockAPI:
        """The block with this hash (canonical or not)."""
        return self.chain.get_block_by_hash(Hash32(block_hash))

    def head(self) -> BlockHeaderAPI:
        """The latest mined block's header."""
        return self.chain.get_canonical_head()

    # -- blocks and time ----------------------------------------------------------------

    def next_timestamp(self) -> int:
        """The next block's timestamp: wall clock plus offset, later than the head's."""
        return max(int(time.time()) + self.offset, self.head().timestamp + 1)

    def stamp_pending(self) -> None:
        """Give the pending block the current timestamp (before a transaction runs in it)."""
        chain = self.chain
        chain.header = chain.header.copy(timestamp=self.next_timestamp())

    def mine(self) -> BlockAPI:
        """Seal the pending block (with whatever it holds) and index its transactions."""
        block = self.block_by_hash(self.backend.mine_blocks(1)[0])
        for index, tx in enumerate(block.transactions):
            self._tx_index[tx.hash] = (block.number, block.hash, index)
        self._receipts_of(block)
        return block

    def block_number(self, tag: object) -> int:
        """A block tag (``"latest"``, ``"earliest"``, a number, EIP-1898 object) as a number.

        Raises
        ------
        RpcError
            ``-32602`` for a block past the head, like anvil's ``BlockOutOfRangeError``.
        """
        head = self.head().block_number
        if isinstance(tag, dict):
            if "blockHash" in tag:
                return self._canonical_header_by_hash(tag["blockHash"]).block_number
            tag = tag.get("blockNumber")
        if tag in _LATEST_TAGS:
            return head
        if tag == "earliest":
            return 0
        number = parse_int(tag, "block number")
        if number > head:
            raise RpcError(
                -32602, f"BlockOutOfRangeError: block height is {head} but requested was {number}"
            )
        return number

    def _canonical_header_by_hash(self, value: object) -> BlockHeaderAPI:
        block_hash = bytes.fromhex(str(value)[2:]) if isinstance(value, str) else b""
        try:
            header = self.chain.get_block_header_by_hash(Hash32(block_hash))
        except Exception as exc:
            raise RpcError(-32000, "unknown block") from exc
        if not self._is_canonical(header.block_number, header.hash):
            raise RpcError(-32000, "unknown block")
        return header

    def _is_canonical(self, number: int, block_hash: bytes) -> bool:
        if number > self.head().block_number:
            return False
        canonical: bytes = self.chain.chaindb.get_canonical_block_hash(BlockNumber(number))
        return canonical == block_hash

    def state(self, tag: object) -> StateAPI:
        """The state after the block ``tag`` names; the latest includes dev-method edits."""
        number = self.block_number(tag)
        chain = self.chain
        if number == self.head().block_number:
            return chain.get_vm().state
        return chain.get_vm(self.header_at(number)).state

    def get_block(self, tag: object, full: bool) -> _Json | None:
        """``eth_getBlockByNumber``: ``None`` past the head."""
        chain = self.chain
        if tag == "pending":
            block = chain.get_block()
        else:
            try:
                number = self.block_number(tag)
            except RpcError:
                return None
            block = self.block_at(number)
        return format_block(block, len(rlp.encode(block)), full)

    def get_block_by_hash(self, value: object, full: bool) -> _Json | None:
        """``eth_getBlockByHash``: ``None`` for an unknown or reverted block."""
        try:
            header = self._canonical_header_by_hash(value)
        except RpcError:
            return None
        block = self.block_by_hash(header.hash)
        return format_block(block, len(rlp.encode(block)), full)

    # -- transactions and logs ----------------------------------------------------------

    def locate(self, tx_hash: bytes) -> tuple[bytes, int] | None:
        entry = self._tx_index.get(tx_hash)
        if entry is None or not self._is_canonical(entry[0], entry[1]):
            return None
        return entry[1], entry[2]

    def _receipts_of(self, block: BlockAPI) -> list[_Json]:
        cached = self._receipts.get(block.hash)
        if cached is None:
            receipts = tuple(block.get_receipts(self.chain.chaindb))
            cached = self._receipts[block.hash] = format_receipts(block, receipts)
        return cached

    def get_transaction(self, tx_hash: bytes) -> _Json | None:
        """``eth_getTransactionByHash``: ``None`` when unknown (or reverted away)."""
        found = self.locate(tx_hash)
        if found is None:
            return None
        block = self.block_by_hash(found[0])
        return format_transaction(block.transactions[found[1]], block.header, found[1])

    def get_receipt(self, tx_hash: bytes) -> _Json | None:
        """``eth_getTransactionReceipt``: ``None`` when unknown (or reverted away)."""
        found = self.locate(tx_hash)
        if found is None:
            return None
        receipts = self._receipts.get(found[0])
        if receipts is None:
            receipts = self._receipts_of(self.block_by_hash(found[0]))
        return receipts[found[1]]

    def receipts_at(self, number: int) -> list[_Json]:
        """The formatted receipts of canonical block ``number``."""
        block_hash: bytes = self.chain.chaindb.get_canonical_block_hash(BlockNumber(number))
        receipts = self._receipts.get(block_hash)
        if receipts is None:
            receipts = self._receipts_of(self.block_by_hash(block_hash))
        return receipts

    def get_logs(self, query: _Json) -> list[_Json]:
        """``eth_getLogs``: ``address``, ``topics``, ``fromBlock``/``toBlock`` or ``blockHash``."""
        start: int
        end: int
        if query.get("blockHash") is not None:
            start = end = self._canonical_header_by_hash(query["blockHash"]).block_number
        else:
            start = self.block_number(query.get("fromBlock", "latest"))
            end = self.block_number(query.get("toBlock", "latest"))
        address = query.get("address")
        addresses = None
        if address is not None:
            wanted = address if isinstance(address, list) else [address]
            addresses = {hex_bytes(parse_address(a)) for a in wanted}
        topics = [_topic_set(spec) for spec in query.get("topics") or []]
        out = []
        for number in range(start, end + 1):
            for receipt in self.receipts_at(number):
                for log in receipt["logs"]:
                    if addresses is not None and log["address"] not in addresses:
                        continue
                    if _topics_match(log["topics"], topics):
                        out.append(log)
        return out


def _topic_set(spec: object) -> set[str] | None:
    if spec is None:
        return None
    items = spec if isinstance(spec, list) else [spec]
    if any(item is None for item in items):
        return None
    return {str(item).lower() for item in items}


def _topics_match(log_topics: list[str], wanted: list[set[str] | None]) -> bool:
    for position, options in enumerate(wanted):
        if options is None:
            continue
        if position >= len(log_topics) or log_topics[position] not in options:
            return False
    return True
