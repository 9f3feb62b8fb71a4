"""The receipt of a finished task: what was run, what was committed, who checked it.

Anyone holding a receipt can check it without trusting the coordinator
(``gensyn verify receipt.json``): the Merkle root recomputed from its leaves,
every verifier's signature, the output hash against the result manifest, and
the provider's commit and the outcome on chain.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from ._bundle import Sha256
from ._commitment import Commitment
from ._payment import TxRef
from ._task import ResultManifest
from ._verify import Verification

__all__ = ["RECEIPT_VERSION", "Receipt", "output_hash"]

RECEIPT_VERSION = 1


def output_hash(manifest: ResultManifest) -> bytes:
    """sha256 of the result manifest as posted (names the output blobs by their hashes).

    The provider commits it on chain with the checkpoint root; the commit's
    own transaction hash is left out (it cannot be known before the commit).
    """
    body = manifest.model_dump_json(exclude={"commit_tx"})
    return hashlib.sha256(body.encode()).digest()


class Receipt(BaseModel):
    """Everything needed to check a task's result independently."""

    model_config = ConfigDict(extra="forbid")

    version: int = RECEIPT_VERSION
    task_id: str
    network: str = Field(description="the coordinator's URL")
    state: str = Field(description="the task's final state (settled, slashed, ...)")
    bundle: Sha256 = Field(description="sha256 of the bundle the cell was captured into")
    provider: str | None = None
    provider_address: str | None = None
    device: str = "cpu"
    steps: int = 0
    result: ResultManifest = Field(description="the manifest the provider posted")
    output_hash: str = Field(description="0x-hex sha256 of the manifest: committed on chain")
    commitment: Commitment | None = Field(
        default=None, description="Merkle root, leaves and the determinism class"
    )
    verification: Verification | None = None
    chain_id: int | None = None
    rpc_url: str | None = None
    market: str | None = None
    task_key: str | None = Field(default=None, description="the task's id on chain")
    transactions: list[TxRef] = Field(default_factory=list)
