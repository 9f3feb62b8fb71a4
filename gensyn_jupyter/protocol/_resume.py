"""Resume points: a checkpoint uploaded during a run, from which another provider continues."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._commitment import CheckpointLeaf
from ._verify import CheckpointBlob

__all__ = ["CheckpointPost", "ProgressClaim"]


class ProgressClaim(BaseModel):
    """What the provider of a paid run claims for its work up to the checkpoint.

    ``signature`` is the provider's EIP-191 signature of the market's progress
    hash of ``(taskKey, step, leaf, amount_wei)``
    (:func:`gensyn_jupyter.chain.progress_hash`); if the provider is lost,
    ``TaskMarket.reassign`` pays it exactly this amount when the task settles
    (docs/faults.md).
    """

    model_config = ConfigDict(extra="forbid")

    amount_wei: Annotated[int, Field(ge=0, lt=2**96)] = Field(
        description="GPU-seconds up to the checkpoint times the rate, at most the price left"
    )
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte r, s, v")


class CheckpointPost(BaseModel):
    """A resumable checkpoint the worker just wrote, posted on the lease while the cell runs.

    The coordinator keeps the latest per task; when the provider goes silent,
    the task is leased again with it, and the next provider's worker restores
    the checkpoint, fast-forwards the cell's loops to its position and runs the
    rest. ``leaves``, ``dues``, ``every`` and ``next_due`` are the recorder's
    state right after the checkpoint, so the resumed run commits the same
    leaves (and Merkle root) as an uninterrupted one.
    """

    model_config = ConfigDict(extra="forbid")

    leaf: Annotated[int, Field(ge=1)] = Field(description="index of this checkpoint in ``leaves``")
    step: Annotated[int, Field(ge=1)] = Field(description="optimizer steps done at the checkpoint")
    leaves: Annotated[list[CheckpointLeaf], Field(min_length=2, max_length=2048)] = Field(
        description="the run's leaves so far, this checkpoint last"
    )
    dues: Annotated[list[int], Field(max_length=2048)] = Field(
        description="the step each leaf was due at (same length as ``leaves``)"
    )
    every: Annotated[int, Field(ge=1)] = Field(description="steps between checkpoints from here")
    next_due: Annotated[int, Field(ge=1)] = Field(description="the step the next checkpoint is due")
    blobs: Annotated[list[CheckpointBlob], Field(max_length=2048)] = Field(
        default_factory=list,
        description="uploaded checkpoints among ``leaves`` (this one included)",
    )
    claim: ProgressClaim | None = Field(
        default=None, description="a paid run's signed claim for the work up to this checkpoint"
    )

    @model_validator(mode="after")
    def _consistent(self) -> CheckpointPost:
        if len(self.dues) != len(self.leaves):
            raise ValueError(
                f"'dues' has {len(self.dues)} entries for {len(self.leaves)} leaves; "
                "send one due step per leaf"
            )
        if self.leaf != len(self.leaves) - 1:
            raise ValueError(
                f"'leaf' is {self.leaf} but the checkpoint must be the last of the "
                f"{len(self.leaves)} leaves"
            )
        last = self.leaves[-1]
        if last.kind != "boundary" or not last.resumable or last.step != self.step:
            raise ValueError(
                f"leaf {self.leaf} is a {last.kind} leaf at step {last.step}: only a "
                f"resumable boundary checkpoint at step {self.step} can be resumed from"
            )
        if not any(b.leaf == self.leaf for b in self.blobs):
            raise ValueError(f"'blobs' must name the files of leaf {self.leaf}")
        return self

    def checkpoint(self) -> CheckpointBlob:
        """The blobs of the checkpoint to resume from."""
        return next(b for b in self.blobs if b.leaf == self.leaf)
