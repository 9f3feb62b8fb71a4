"""Checkpoint commitments: what a provider commits to about a run (see docs/protocol.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "COMMITMENT_VERSION",
    "CheckpointLeaf",
    "Commitment",
    "DeterminismClass",
    "Hex32",
    "LeafKind",
]

COMMITMENT_VERSION = 1

Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-f]{64}$", description="32 bytes, 0x + hex")]

LeafKind = Literal["start", "boundary", "hook", "end"]
"""Where in the run a leaf's state was taken.

``start``: before the cell ran (the inputs as sent, after seeding).
``boundary``: at the first ``next()`` of a ``for`` loop after the step (the
previous iteration's body has finished: a replay can resume here).
``hook``: inside the optimizer step itself (steps driven by a ``while`` loop or
two steps per iteration: a replay must start earlier). ``end``: after the cell.
"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeterminismClass(_Model):
    """The software and hardware a run's bits depend on; equal classes replay bit for bit."""

    python: str
    torch: str
    numpy: str = ""
    device_type: Literal["cpu", "cuda"]
    device_name: str = Field(description="CPU model or GPU name")
    cpu_capability: str = Field(default="", description="torch's CPU kernel ISA, e.g. AVX2")
    cuda: str | None = None
    cudnn: int | None = None
    threads: int = Field(ge=1, description="torch intra-op threads")
    deterministic_algorithms: bool = True
    cublas_workspace_config: str | None = None
    allow_tf32: bool = False


class CheckpointLeaf(_Model):
    """One leaf of the checkpoint tree: the hash of the full training state at a step."""

    step: int = Field(ge=0, description="optimizer steps done when the state was taken")
    kind: LeafKind
    leaf: Hex32
    resumable: bool = Field(description="a replay may start from this checkpoint")


class Commitment(_Model):
    """The Merkle commitment of a run: its root goes on chain with the output hash."""

    version: int = COMMITMENT_VERSION
    root: Hex32 = Field(description="keccak256(0x02 ‖ uint256(len(leaves)) ‖ tree root)")
    leaves: Annotated[list[CheckpointLeaf], Field(min_length=2, max_length=100_000)]
    checkpoint_every: int = Field(ge=1, description="optimizer steps between checkpoints")
    seed: int = Field(ge=0, description="seed of every RNG before the cell ran")
    determinism: DeterminismClass
    final_parts: dict[str, Hex32] = Field(
        default_factory=dict,
        description="digests of the last leaf's parts ('module:model', 'optimizer:opt', ...)",
    )
    nondeterministic_ops: list[str] = Field(
        default_factory=list, description="ops that warned they have no deterministic kernel"
    )
    notes: list[str] = Field(default_factory=list)
