"""Check a receipt offline: the root, the verdicts' signatures, the output hash, the weights.

The on-chain half (the provider's commit and the outcome events) is in
``gensyn_jupyter.chain``; ``gensyn verify`` runs both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..protocol import JobKind, Receipt, Verdict, output_hash, verdict_message
from ._merkle import MerkleTree

__all__ = ["ReceiptCheck", "check_receipt"]


@dataclass(frozen=True)
class ReceiptCheck:
    """One thing checked: its name, whether it holds, and what was compared."""

    name: str
    ok: bool
    detail: str


def check_receipt(receipt: Receipt, *, tensors: bytes | None = None) -> list[ReceiptCheck]:
    """Every check that needs no network.

    Parameters
    ----------
    receipt : Receipt
    tensors : bytes, optional
        The returned weights (the task's safetensors blob): their sha256 must
        be the one the manifest names.
    """
    checks: list[ReceiptCheck] = []
    computed = "0x" + output_hash(receipt.result).hex()
    checks.append(
        ReceiptCheck(
            "output hash",
            computed == receipt.output_hash,
            f"sha256 of the result manifest {computed[:18]}…, receipt {receipt.output_hash[:18]}…",
        )
    )
    commitment = receipt.commitment
    if commitment is not None:
        tree = MerkleTree([bytes.fromhex(leaf.leaf[2:]) for leaf in commitment.leaves])
        root = "0x" + tree.root.hex()
        checks.append(
            ReceiptCheck(
                "merkle root",
                root == commitment.root,
                f"{len(commitment.leaves)} leaves hash to {root[:18]}…, committed "
                f"{commitment.root[:18]}…",
            )
        )
        same = receipt.result.commitment is not None and (
            receipt.result.commitment.root == commitment.root
        )
        checks.append(
            ReceiptCheck("root in the manifest", same, "the manifest names the same root")
        )
    checks.extend(_verdicts(receipt))
    if tensors is not None:
        sha = hashlib.sha256(tensors).hexdigest()
        named = receipt.result.tensors
        checks.append(
            ReceiptCheck(
                "returned weights",
                sha == named,
                f"sha256 of the weights {sha[:16]}…, the manifest names {str(named)[:16]}…",
            )
        )
    return checks


def _verdicts(receipt: Receipt) -> list[ReceiptCheck]:
    verification = receipt.verification
    commitment = receipt.commitment
    if verification is None or commitment is None:
        return []
    from eth_account import Account
    from eth_account.messages import encode_defunct

    checks: list[ReceiptCheck] = []
    signed: list[tuple[JobKind, int, Verdict]] = [
        ("spot", int(k), v) for k, v in sorted(verification.verdicts.items())
    ]
    if verification.ruling is not None and verification.verdicts:
        bad = [int(k) for k, v in verification.verdicts.items() if not v.matches]
        if bad:
            signed.append(("referee", bad[0], verification.ruling))
    for kind, segment, verdict in signed:
        name = f"{kind} verdict on segment {segment}"
        if verdict.signature is None or verdict.signer is None:
            checks.append(ReceiptCheck(name, False, "unsigned (a free network's verifier)"))
            continue
        message = verdict_message(receipt.task_id, commitment.root, kind, segment, verdict)
        try:
            signer = Account.recover_message(
                encode_defunct(text=message), signature=verdict.signature
            )
        except Exception as exc:
            checks.append(ReceiptCheck(name, False, f"malformed signature: {exc}"))
            continue
        ok = signer.lower() == verdict.signer.lower()
        said = "reproduced" if verdict.matches else "did NOT reproduce"
        checks.append(ReceiptCheck(name, ok, f"signed by {signer}: the segment {said}"))
    return checks
