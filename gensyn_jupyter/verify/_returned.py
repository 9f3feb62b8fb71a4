"""The kernel's own check of a commitment against the weights that came back.

A provider commits to a Merkle root of state hashes; the last leaf is the
state after the cell, and the commitment lists that leaf's parts
(``module:model``, ``optimizer:opt``...). Once the results are loaded, the
kernel recomputes what it can without any trust in the provider:

- the root from the listed leaves (the one that goes on chain);
- the last leaf from the listed parts;
- each returned module's part from its loaded weights.

A mismatch means the weights the user got are not the ones the provider
committed to (and would be judged on), so the cell says so loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol import Commitment
from ._canonical import canonical_bytes
from ._merkle import MerkleTree, keccak256
from ._state import _LEAF_DOMAIN, part_digest

__all__ = ["ReturnCheck", "check_returned"]


@dataclass(frozen=True)
class ReturnCheck:
    """What the kernel could check of a commitment, and what it found."""

    root: str
    checkpoints: int
    every: int
    root_ok: bool
    last_leaf_ok: bool
    matched: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing checked disagrees (the root and the last leaf always are)."""
        return self.root_ok and self.last_leaf_ok and not self.mismatched

    def describe(self) -> str:
        """One line for the cell's output."""
        head = (
            f"commitment {self.root[:10]}…, {self.checkpoints} checkpoints every "
            f"{self.every} step{'s' if self.every != 1 else ''}"
        )
        if not self.root_ok:
            return f"{head}: its root does NOT match its leaves; do not trust this result"
        if not self.last_leaf_ok:
            return f"{head}: its last checkpoint does NOT match its parts; do not trust this result"
        if self.mismatched:
            names = ", ".join(self.mismatched)
            return (
                f"{head}: the returned weights of {names} do NOT match the committed "
                "checkpoint; do not trust this result"
            )
        if self.matched:
            verb = "matches" if len(self.matched) == 1 else "match"
            return f"{head}: the returned {', '.join(self.matched)} {verb} the last checkpoint"
        return f"{head}: root and last checkpoint consistent (no returned module to compare)"


def _bytes(hex32: str) -> bytes:
    return bytes.fromhex(hex32[2:])


def check_returned(commitment: Commitment, namespace: Mapping[str, Any]) -> ReturnCheck:
    """Check ``commitment`` against itself and against the modules in ``namespace``."""
    leaves = [_bytes(leaf.leaf) for leaf in commitment.leaves]
    root_ok = "0x" + MerkleTree(leaves).root.hex() == commitment.root
    parts = {name: _bytes(value) for name, value in commitment.final_parts.items()}
    last = commitment.leaves[-1]
    recomputed = keccak256(_LEAF_DOMAIN + canonical_bytes({"step": last.step, "parts": parts}))
    last_leaf_ok = bool(parts) and recomputed == leaves[-1]
    matched: list[str] = []
    mismatched: list[str] = []
    for part, expected in sorted(parts.items()):
        if not part.startswith("module:"):
            continue
        name = part.removeprefix("module:")
        module = namespace.get(name)
        state_dict = getattr(module, "state_dict", None)
        if state_dict is None or not callable(state_dict):
            continue  # not returned under that name: nothing to compare
        got = part_digest(part, dict(state_dict()))
        (matched if got == expected else mismatched).append(name)
    return ReturnCheck(
        root=commitment.root,
        checkpoints=len(commitment.leaves),
        every=commitment.checkpoint_every,
        root_ok=root_ok,
        last_leaf_ok=last_leaf_ok,
        matched=matched,
        mismatched=mismatched,
    )
