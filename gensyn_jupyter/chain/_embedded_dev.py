"""Anvil's dev methods on the embedded chain: clock, mining on demand, snapshots, balances."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_typing import Address

from ._embedded_chain import EmbeddedChain
from ._embedded_codec import RpcError, hex_int, parse_int

__all__ = ["DevControls"]


@dataclass(frozen=True)
class _Snapshot:
    head: bytes
    pending_state_root: bytes
    offset: int


class DevControls:
    """``evm_*`` and ``anvil_*`` methods of one :class:`EmbeddedChain`.

    Parameters
    ----------
    node
        The chain they act on; callers hold its lock.
    """

    def __init__(self, node: EmbeddedChain) -> None:
        self.node = node
        self._snapshots: dict[int, _Snapshot] = {}
        self._next_id = 0

    def increase_time(self, seconds: object) -> int:
        """``evm_increaseTime``: move the clock of later blocks; the total offset, as anvil."""
        self.node.offset += parse_int(seconds, "seconds")
        return self.node.offset

    def set_next_block_timestamp(self, timestamp: object) -> None:
        """``evm_setNextBlockTimestamp``: the next block's timestamp; later blocks follow it."""
        wanted = parse_int(timestamp, "timestamp")
        head = self.node.head().timestamp
        if wanted <= head:
            raise RpcError(
                -32602, f"Timestamp error: {wanted} is lower than or equal to previous block's"
            )
        self.node.offset = wanted - int(time.time())

    def mine(self, options: object = None) -> str:
        """``evm_mine``: mine empty blocks; ``options`` a timestamp or ``{blocks, timestamp}``."""
        blocks = 1
        timestamp: object = None
        if isinstance(options, dict):
            blocks = parse_int(options.get("blocks", 1), "blocks")
            timestamp = options.get("timestamp")
        elif options is not None:
            timestamp = options
        if timestamp is not None:
            wanted = parse_int(timestamp, "timestamp")
            if wanted < self.node.head().timestamp:
                raise RpcError(
                    -32602, f"Timestamp error: {wanted} is lower than previous block's timestamp"
                )
            self.node.offset = wanted - int(time.time())
        for _ in range(max(blocks, 1)):
            self.node.stamp_pending()
            self.node.mine()
        return "0x0"

    def snapshot(self) -> str:
        """``evm_snapshot``: remember the chain, pending edits and clock; the snapshot's id."""
        node = self.node
        snapshot_id = self._next_id
        self._next_id += 1
        self._snapshots[snapshot_id] = _Snapshot(
            head=node.head().hash,
            pending_state_root=node.chain.header.state_root,
            offset=node.offset,
        )
        return hex_int(snapshot_id)

    def revert(self, snapshot_id: object) -> bool:
        """``evm_revert``: back to a snapshot, which is used up (so are later ones).

        Returns
        -------
        bool
            False when no such snapshot exists (any more), as anvil.
        """
        wanted = parse_int(snapshot_id, "snapshot id")
        snapshot = self._snapshots.get(wanted)
        if snapshot is None:
            return False
        for later in [i for i in self._snapshots if i >= wanted]:
            del self._snapshots[later]
        node = self.node
        node.backend.revert_to_snapshot(snapshot.head)
        chain = node.chain
        chain.header = chain.header.copy(state_root=snapshot.pending_state_root)
        node.offset = snapshot.offset
        return True

    def set_balance(self, address: bytes, balance: object) -> None:
        """``anvil_setBalance``: effective at once for reads and the next transaction."""
        chain = self.node.chain
        state = chain.get_vm().state
        state.set_balance(Address(address), parse_int(balance, "balance"))
        state.persist()
        chain.header = chain.header.copy(state_root=state.state_root)
