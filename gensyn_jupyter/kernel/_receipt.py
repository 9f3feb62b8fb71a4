"""Build a finished task's receipt in the kernel, and show it in the cell's output.

The receipt travels in the output's metadata (``application/json`` with
``metadata["gensyn"]["receipt"]``), so a saved notebook carries it and
``gensyn verify`` can check it later without the coordinator.
"""

from __future__ import annotations

import json
from typing import Any

from ..protocol import Receipt, Task, output_hash
from ._client import CoordinatorClient

__all__ = ["build_receipt", "describe", "show_receipt"]


def build_receipt(task: Task, client: CoordinatorClient) -> Receipt | None:
    """The receipt of a task that ran (None before a result was posted)."""
    if task.result is None:
        return None
    payment = task.payment
    chain = client.chain_info() if payment is not None else None
    return Receipt(
        task_id=task.id,
        network=client.base_url,
        state=task.state.value,
        bundle=task.spec.bundle,
        provider=task.provider_name,
        provider_address=payment.provider_address if payment is not None else None,
        device=task.result.device,
        steps=task.result.steps,
        result=task.result,
        output_hash="0x" + output_hash(task.result).hex(),
        commitment=task.result.commitment,
        verification=task.verification,
        chain_id=chain.chain_id if chain is not None else None,
        rpc_url=chain.rpc_url if chain is not None else None,
        market=chain.market if chain is not None else None,
        task_key=payment.task_key if payment is not None else None,
        transactions=list(payment.transactions) if payment is not None else [],
    )


def describe(receipt: Receipt) -> str:
    """One line for the cell: what the receipt vouches for."""
    parts = [f"receipt for {receipt.task_id}: {receipt.state}"]
    if receipt.commitment is not None:
        parts.append(f"root {receipt.commitment.root[:10]}…")
    verification = receipt.verification
    if verification is not None and verification.sampled:
        signed = sum(1 for v in verification.verdicts.values() if v.signature)
        parts.append(
            f"{len(verification.sampled)} of {verification.segments} segments replayed "
            f"({signed} signed verdicts)"
        )
    if receipt.transactions:
        parts.append(f"{len(receipt.transactions)} transactions")
    return ", ".join(parts) + "; check it with `gensyn verify receipt.json`"


def show_receipt(receipt: Receipt) -> bool:
    """Display the receipt in the cell's output (its JSON in the output metadata).

    Returns False outside IPython (the caller prints :func:`describe` instead).
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    data: dict[str, Any] = json.loads(receipt.model_dump_json())
    display(  # type: ignore[no-untyped-call]
        {"text/plain": "[gensyn] " + describe(receipt)},
        raw=True,
        metadata={"gensyn": {"receipt": data}},
    )
    return True
