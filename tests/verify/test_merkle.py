"""Merkle proofs: every leaf proves against the root, nothing else does; bisection is O(log n)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gensyn_jupyter.verify import MerkleTree, first_divergent_leaf, keccak256, verify_proof

leaves_st = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


def test_keccak_is_ethereums() -> None:
    # keccak256("") as every Ethereum client computes it (not NIST SHA3-256).
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


def test_a_single_leaf_tree_commits_to_its_count_and_leaf() -> None:
    leaf = bytes(range(32))
    tree = MerkleTree([leaf])
    leaf_node = keccak256(b"\x00" + leaf)
    assert tree.root == keccak256(b"\x02" + (1).to_bytes(32, "big") + leaf_node)
    assert tree.proof(0) == []
    assert verify_proof(tree.root, leaf, 0, 1, [])


@settings(max_examples=60, deadline=None)
@given(leaves_st)
def test_every_leaf_proves_against_the_root(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaves)
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert len(proof) <= math.ceil(math.log2(len(leaves))) if len(leaves) > 1 else proof == []
        assert verify_proof(tree.root, leaf, index, len(leaves), proof)


@settings(max_examples=60, deadline=None)
@given(leaves_st, st.data())
def test_a_wrong_leaf_index_count_or_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.proof(index)
    leaf = leaves[index]
    other = bytes([leaf[0] ^ 1]) + leaf[1:]
    assert not verify_proof(tree.root, other, index, len(leaves), proof)
    assert not verify_proof(tree.root, leaf, index, len(leaves) + 1, proof)
    if len(leaves) > 1:
        wrong = data.draw(st.integers(0, len(leaves) - 1).filter(lambda i: leaves[i] != leaf))
        assert not verify_proof(tree.root, leaf, wrong, len(leaves), proof)
        broken = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert not verify_proof(tree.root, leaf, index, len(leaves), broken)
        assert not verify_proof(tree.root, leaf, index, len(leaves), proof[:-1])
    assert not verify_proof(tree.root, leaf, index, len(leaves), [*proof, b"\x00" * 32])


def test_no_two_leaf_lists_share_a_root() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    roots = {MerkleTree(x).root for x in ([a], [a, b], [a, b, c], [a, b, c, c], [b, a], [a, a])}
    assert len(roots) == 6
    # A leaf is never mistaken for an inner node (domain separation):
    inner = keccak256(b"\x01" + keccak256(b"\x00" + a) + keccak256(b"\x00" + b))
    assert MerkleTree([inner]).root != MerkleTree([a, b]).root


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_first_divergent_leaf_in_log_comparisons(count: int, data: st.DataObject) -> None:
    honest = [i.to_bytes(32, "big") for i in range(count)]
    first = data.draw(st.integers(0, count - 1))
    later = data.draw(st.lists(st.integers(first, count - 1), max_size=5))
    cheat = list(honest)
    for index in {first, *later}:
        cheat[index] = (10_000 + index).to_bytes(32, "big")
    a, b = MerkleTree(honest), MerkleTree(cheat)
    found = first_divergent_leaf(count, a.node, b.node)
    assert found is not None and found.index == first
    assert found.comparisons <= math.ceil(math.log2(count)) + 1
    assert first_divergent_leaf(count, a.node, MerkleTree(honest).node) is None
