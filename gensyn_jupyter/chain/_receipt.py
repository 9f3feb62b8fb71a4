"""The on-chain half of checking a receipt: the provider's commit and the task's outcome."""

from __future__ import annotations

from web3 import HTTPProvider, Web3

from ..protocol import Receipt
from ._market import Market

__all__ = ["check_receipt_onchain"]

Check = tuple[str, bool, str]


def check_receipt_onchain(receipt: Receipt, rpc_url: str | None = None) -> list[Check]:
    """(name, ok, detail) for each on-chain fact the receipt claims.

    The provider's ``TaskCommitted`` event (sent from its own key: its
    signature on the root and the output hash), the outcome event
    (``TaskFinalized`` for a settled task, ``FraudProven`` naming the provider
    for a slashed one), and every listed transaction mined successfully.
    """
    url = rpc_url or receipt.rpc_url
    if receipt.task_key is None or receipt.market is None or url is None:
        return [("on chain", False, "the receipt names no chain (a free network's task)")]
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 10}))
    market = Market(w3=w3, address=receipt.market)
    events = market.events(from_block=0, task_id=bytes.fromhex(receipt.task_key[2:]))
    checks: list[Check] = []
    commits = [e for e in events if e.name == "TaskCommitted"]
    root = receipt.commitment.root if receipt.commitment is not None else receipt.output_hash
    for event in commits:
        provider = str(event.args["provider"])
        got_root = "0x" + bytes(event.args["checkpointRoot"]).hex()
        got_output = "0x" + bytes(event.args["outputHash"]).hex()
        ok = (
            provider.lower() == (receipt.provider_address or "").lower()
            and got_root == root
            and got_output == receipt.output_hash
        )
        checks.append(
            (
                "provider's commit",
                ok,
                f"{provider} committed root {got_root[:18]}… and output {got_output[:18]}… "
                f"in block {event.block_number}",
            )
        )
    if not commits:
        checks.append(("provider's commit", False, "no TaskCommitted event for this task"))
    names = [e.name for e in events]
    if receipt.state == "settled":
        checks.append(("outcome", "TaskFinalized" in names, f"events: {', '.join(names)}"))
    elif receipt.state == "slashed":
        proven = [e for e in events if e.name == "FraudProven"]
        ok = (
            bool(proven)
            and str(proven[0].args["cheater"]).lower() == (receipt.provider_address or "").lower()
        )
        checks.append(("outcome", ok, f"events: {', '.join(names)}"))
    for tx in receipt.transactions:
        try:
            status = int(w3.eth.get_transaction_receipt(tx.hash)["status"])  # type: ignore[arg-type]
        except Exception as exc:
            checks.append((f"{tx.kind} transaction", False, f"{tx.hash[:18]}… not found: {exc}"))
            continue
        checks.append((f"{tx.kind} transaction", status == 1, f"{tx.hash[:18]}… status {status}"))
    return checks
