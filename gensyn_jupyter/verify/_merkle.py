"""A binary Merkle tree over 32-byte leaves, keccak256, leaves and nodes domain-separated.

The tree is built bottom-up; a level with an odd count moves its last node up
unchanged (no duplication, so no two leaf lists share a tree, unlike
Bitcoin's). Node hashes::

    leaf node     = keccak256(0x00 ‖ leaf)
    inner node    = keccak256(0x01 ‖ left ‖ right)
    committed root = keccak256(0x02 ‖ uint256(leaf count) ‖ top node)

The count in the committed root pins the shape, so a proof checks against
``(root, count)`` only, and a Solidity verifier needs nothing but
``keccak256(abi.encodePacked(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak

__all__ = [
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "ROOT_PREFIX",
    "Divergence",
    "MerkleTree",
    "first_divergent_leaf",
    "keccak256",
    "level_sizes",
    "verify_proof",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ROOT_PREFIX = b"\x02"

NodeLookup = Callable[[int, int], bytes]
"""``(level, index) -> node hash``; level 0 holds the hashed leaves."""


def keccak256(data: bytes) -> bytes:
    """keccak256 as Ethereum computes it (not NIST SHA3-256)."""
    return bytes(keccak(data))


def _check32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes")
    return bytes(value)


def _leaf_node(leaf: bytes) -> bytes:
    return keccak256(LEAF_PREFIX + leaf)


def _inner_node(left: bytes, right: bytes) -> bytes:
    return keccak256(NODE_PREFIX + left + right)


def _commit_root(count: int, top: bytes) -> bytes:
    return keccak256(ROOT_PREFIX + count.to_bytes(32, "big") + top)


def level_sizes(count: int) -> list[int]:
    """Number of nodes on each level, leaves first, the top (1) last."""
    if count < 1:
        raise ValueError("a Merkle tree needs at least one leaf")
    sizes = [count]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class MerkleTree:
    """All levels of the tree over ``leaves`` (each 32 bytes), kept for proofs."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.leaves = [_check32(leaf, f"leaf {i}") for i, leaf in enumerate(leaves)]
        level = [_leaf_node(leaf) for leaf in self.leaves]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [_inner_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt
        self.root = _commit_root(len(self.leaves), level[0])
        """The committed root (count included): what goes on chain."""

    def __len__(self) -> int:
        return len(self.leaves)

    def node(self, level: int, index: int) -> bytes:
        """The node at ``(level, index)`` (level 0: hashed leaves)."""
        return self.levels[level][index]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from the leaf up; levels where the node has no sibling are skipped."""
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"leaf {index} is not in a tree of {len(self.leaves)}")
        out: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def verify_proof(root: bytes, leaf: bytes, index: int, count: int, proof: Sequence[bytes]) -> bool:
    """True when ``leaf`` is leaf ``index`` of the ``count``-leaf tree committed as ``root``."""
    if not 0 <= index < count or len(leaf) != 32 or len(root) != 32:
        return False
    node = _leaf_node(bytes(leaf))
    siblings = iter(proof)
    for size in level_sizes(count)[:-1]:
        sibling_index = index ^ 1
        if sibling_index < size:
            sibling = next(siblings, None)
            if sibling is None or len(sibling) != 32:
                return False
            node = _inner_node(node, sibling) if index % 2 == 0 else _inner_node(sibling, node)
        index //= 2
    if next(siblings, None) is not None:
        return False
    return _commit_root(count, node) == bytes(root)


@dataclass(frozen=True)
class Divergence:
    """Where two trees of the same size first differ, and what finding it cost."""

    index: int
    comparisons: int


def first_divergent_leaf(count: int, a: NodeLookup, b: NodeLookup) -> Divergence | None:
    """The first leaf where two ``count``-leaf trees differ, in O(log count) node comparisons.

    ``a`` and ``b`` look nodes up (a local :meth:`MerkleTree.node`, or a remote
    provider answering one node at a time). Returns None when the tops agree.
    Walks down from the top: when the left children differ the first
    divergence is on the left, otherwise on the right.
    """
    sizes = level_sizes(count)
    top = len(sizes) - 1
    comparisons = 1
    if a(top, 0) == b(top, 0):
        return None
    index = 0
    for level in range(top - 1, -1, -1):
        left = 2 * index
        if left + 1 >= sizes[level]:
            index = left  # promoted unchanged: no comparison needed
            continue
        comparisons += 1
        index = left if a(level, left) != b(level, left) else left + 1
    return Divergence(index=index, comparisons=comparisons)
