"""Verification jobs, verdicts and what a task's verification shows its owner."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._bundle import Sha256
from ._commitment import Commitment, Hex32

__all__ = [
    "CheckpointBlob",
    "JobKind",
    "Verdict",
    "Verification",
    "VerifyJob",
    "verdict_message",
]

JobKind = Literal["spot", "referee", "replica"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckpointBlob(_Model):
    """A committed checkpoint a provider uploaded for verifiers (two blobs per leaf)."""

    leaf: Annotated[int, Field(ge=0)]
    step: Annotated[int, Field(ge=0)]
    kind: Literal["start", "boundary", "hook", "end"]
    meta: Sha256 = Field(description="the checkpoint's JSON (structure, leaf, parts)")
    tensors: Sha256 = Field(description="the checkpoint's safetensors")


class VerifyJob(_Model):
    """Replay one segment of a committed run: leaf ``segment`` -> ``segment + 1``.

    ``spot``: a verifier checks a sampled segment. ``referee``: the referee
    re-executes a segment a verifier challenged, or the first segment where two
    replicas disagree (``rival`` set), and rules on chain. ``replica``: run the
    whole task a second time (``--verify replicate``) and commit its root.
    """

    id: str
    kind: JobKind
    segment: Annotated[int, Field(ge=0)] = 0
    commitment: Commitment | None = Field(
        default=None, description="the run to check; None for a replica job"
    )
    rival: Commitment | None = Field(
        default=None, description="replication disputes: the other replica's commitment"
    )
    rival_address: str | None = None

    @property
    def committed(self) -> Commitment:
        """The commitment a replay checks (spot and referee jobs always carry one)."""
        if self.commitment is None:
            raise ValueError(f"job {self.id} ({self.kind}) names no commitment to replay")
        return self.commitment

    checkpoint: CheckpointBlob | None = Field(
        default=None, description="the checkpoint of leaf ``segment``; None from leaf 0"
    )
    provider_address: str | None = Field(
        default=None, description="the address of the provider whose work is checked"
    )
    challenger: str | None = Field(default=None, description="referee jobs: who challenged")


class Verdict(_Model):
    """What a verifier (or the referee) found, signed by its key on a paid network."""

    leaf: Hex32 | None = Field(default=None, description="the replayed leaf; None on error")
    matches: bool
    steps: Annotated[int, Field(ge=0)] = 0
    seconds: Annotated[float, Field(ge=0)] = 0.0
    note: Annotated[str, Field(max_length=2000)] = ""
    signer: str | None = None
    signature: str | None = None
    tx: str | None = Field(
        default=None,
        pattern=r"^0x[0-9a-f]{64}$",
        description="spot: the challenge transaction on a mismatch; referee: the resolve",
    )


class Verification(_Model):
    """A task's verification as its owner sees it (``Task.verification``)."""

    mode: Literal["spot", "replicate"]
    replica_provider: str | None = Field(
        default=None, description="replicate: the second provider's name"
    )
    replica_root: str | None = Field(default=None, description="replicate: the replica's root")
    segments: Annotated[int, Field(ge=0)] = 0
    sampled: list[int] = Field(default_factory=list)
    seed: str = ""
    fraction: float = 0.1
    verdicts: dict[str, Verdict] = Field(
        default_factory=dict, description="segment index (as text) -> the verifier's verdict"
    )
    verifiers: dict[str, str] = Field(
        default_factory=dict, description="segment index (as text) -> the verifier's name"
    )
    ruling: Verdict | None = Field(default=None, description="the referee's, after a challenge")
    assigned_verifier: str | None = Field(
        default=None, description="paid tasks: the verifier assigned on chain (earns the fee)"
    )
    outcome: Literal["pending", "verified", "fraud", "rejected_challenge"] = "pending"


def verdict_message(task_id: str, root: str, kind: JobKind, segment: int, verdict: Verdict) -> str:
    """The text a verifier signs (EIP-191): every field a reader of the verdict relies on."""
    return (
        "gensyn verdict\n"
        f"task: {task_id}\n"
        f"root: {root}\n"
        f"job: {kind}\n"
        f"segment: {segment}\n"
        f"leaf: {verdict.leaf or 'none'}\n"
        f"matches: {'yes' if verdict.matches else 'no'}"
    )
