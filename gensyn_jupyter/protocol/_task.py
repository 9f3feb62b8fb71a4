"""Tasks, providers, leases and events: what crosses the coordinator's API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._bundle import Sha256
from ._commitment import Commitment
from ._payment import Payment
from ._resume import CheckpointPost
from ._states import TaskState, VerifyMode
from ._verify import CheckpointBlob, Verification, VerifyJob

__all__ = [
    "ErrorBody",
    "Event",
    "EventIn",
    "EventKind",
    "EventsPost",
    "EventsPostReply",
    "GpuInfo",
    "Heartbeat",
    "Lease",
    "MetricPoint",
    "OutputInfo",
    "OutputKind",
    "Provider",
    "ProviderInfo",
    "ProviderRegistration",
    "RemoteError",
    "RemoteFrame",
    "ResultManifest",
    "Task",
    "TaskSpec",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSpec(_Model):
    """What the submitter asks for (the body of ``POST /v1/tasks``)."""

    bundle: Sha256 = Field(description="sha256 of the bundle JSON blob")
    gpus: Annotated[int, Field(ge=1, le=64)] = 1
    verify: VerifyMode = VerifyMode.NONE
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 3600
    label: Annotated[str, Field(max_length=500)] = ""
    owner: Annotated[str, Field(max_length=200)] = ""
    notebook: Annotated[str, Field(max_length=1024)] = Field(
        default="",
        description="the notebook the cell came from, as its kernel knew it "
        "(a path; a home directory spelled '~'); empty when unknown",
    )
    cell_id: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")] = Field(
        default="", description="the nbformat id of the cell; empty when unknown"
    )
    bundle_bytes: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="bytes of the bundle JSON plus its input blobs (the coordinator "
        "stores what it measured)",
    )


class RemoteFrame(_Model):
    """One frame of a traceback raised on the provider."""

    filename: str
    lineno: int
    name: str
    line: str = ""
    in_cell: bool = False


class RemoteError(_Model):
    """An exception the cell raised on the provider, mapped to the cell's lines."""

    type: str
    message: str
    frames: list[RemoteFrame] = Field(default_factory=list)
    cell_line: int | None = None


OutputKind = Literal["module_state", "optimizer_state", "scheduler_state", "tree", "refused"]


class OutputInfo(_Model):
    """One name the provider sends back, and how the kernel should take it."""

    name: str
    kind: OutputKind
    type_name: str
    note: str = ""


class ResultManifest(_Model):
    """What a finished run produced: blobs of safetensors and JSON only."""

    values: Sha256 | None = Field(default=None, description="JSON blob: structure per output")
    tensors: Sha256 | None = Field(default=None, description="safetensors blob of all tensors")
    outputs: list[OutputInfo] = Field(default_factory=list)
    error: RemoteError | None = None
    duration_s: float = 0.0
    steps: int = 0
    device: str = "cpu"
    gpu_peak_bytes: int | None = Field(
        default=None, ge=0, description="on CUDA: peak memory the cell's tensors took on the GPU"
    )
    commit_tx: str | None = Field(
        default=None,
        pattern=r"^0x[0-9a-f]{64}$",
        description="on a paid network: the provider's commit transaction",
    )
    commitment: Commitment | None = Field(
        default=None, description="checkpoint hashes of the run and their Merkle root"
    )
    checkpoints: list[CheckpointBlob] = Field(
        default_factory=list, description="verified tasks: the committed checkpoints, uploaded"
    )


class GpuInfo(_Model):
    name: str
    memory_bytes: int = 0


class ProviderInfo(_Model):
    """Hardware and software a provider offers (``POST /v1/providers``)."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    device_type: Literal["cpu", "cuda"]
    gpus: list[GpuInfo] = Field(default_factory=list)
    cpu_count: int = Field(default=1, ge=1)
    memory_bytes: int = Field(default=0, ge=0)
    python: str
    torch: str
    price_per_gpu_second: float = Field(default=0.0, ge=0.0)
    role: Literal["provider", "referee"] = Field(
        default="provider",
        description="'referee': takes only referee jobs (its address must be the market's referee)",
    )

    def slots(self, device: str) -> int:
        """How many ranks (``--gpus N``) of a task for ``device`` this provider runs at once.

        One per GPU for a task that runs on CUDA; on the CPU one process per core.
        """
        if self.device_type == "cuda" and device != "cpu":
            return max(1, len(self.gpus))
        return max(1, self.cpu_count)


class Provider(_Model):
    id: str
    info: ProviderInfo
    state: Literal["idle", "busy", "offline"]
    last_seen: float
    tasks_done: int = 0
    address: str | None = Field(default=None, description="paid to this account (signed in)")


class ProviderRegistration(_Model):
    """The answer to a registration: who the provider is and how to stay alive."""

    provider: Provider
    token: str = Field(description="bearer token for this provider's lease calls")
    heartbeat_seconds: float
    lease_ttl_seconds: float


class Heartbeat(_Model):
    """The answer to a heartbeat: tasks this provider must stop now."""

    cancel: list[str] = Field(default_factory=list)


class Task(_Model):
    """A task as the coordinator knows it."""

    id: str
    spec: TaskSpec
    state: TaskState
    created_at: float
    updated_at: float
    provider_id: str | None = None
    provider_name: str | None = None
    error: str | None = None
    result: ResultManifest | None = None
    started_at: float | None = None
    finished_at: float | None = None
    gpu_seconds: float = 0.0
    account: str | None = Field(default=None, description="the signed-in account that owns it")
    payment: Payment | None = Field(default=None, description="escrow; None on a free network")
    verification: Verification | None = Field(
        default=None, description="spot or replicate: sampled segments, verdicts, ruling"
    )
    attempt: int = Field(
        default=1, ge=1, description="1, then one more each time a lost provider's run resumes"
    )
    checkpoint_step: int | None = Field(
        default=None, description="step of the latest checkpoint a lost run would resume from"
    )


class Lease(_Model):
    """A task handed to a provider until ``expires_at`` (renewed by heartbeats)."""

    id: str
    task: Task
    provider_id: str
    expires_at: float
    ttl_seconds: float
    job: VerifyJob | None = Field(
        default=None, description="set when the lease is a verification job, not a run"
    )
    resume: CheckpointPost | None = Field(
        default=None,
        description="set when an earlier provider was lost: restore this checkpoint and go on",
    )


EventKind = Literal["state", "stdout", "stderr", "metrics", "log"]


class MetricPoint(_Model):
    step: int = Field(ge=0)
    name: str = Field(min_length=1, max_length=100)
    value: float
    rank: int | None = Field(
        default=None, ge=0, le=63, description="the rank that logged it (tasks with --gpus N > 1)"
    )


class EventIn(_Model):
    """An event a provider posts about its lease.

    ``stdout``/``stderr``: ``{"text": str}``; ``metrics``: ``{"points":
    [MetricPoint...]}``; ``log``: ``{"message": str}``; ``state`` is the
    coordinator's own and is refused from providers.
    """

    kind: EventKind
    data: dict[str, Any] = Field(default_factory=dict)


class EventsPost(_Model):
    events: Annotated[list[EventIn], Field(max_length=10_000)]
    seq: int | None = Field(
        default=None,
        ge=1,
        description="the post's number within its lease (1, 2, ...): a retry sends the same "
        "number, and a post whose number was already recorded is acknowledged, not stored twice",
    )


class EventsPostReply(_Model):
    accepted: int
    cancelled: bool = Field(description="true when the task was cancelled: stop the worker")


class Event(_Model):
    """One entry of a task's history, as streamed by ``GET /v1/tasks/{id}/events``.

    ``state`` events carry ``{"state": TaskState, "message": str, ...}``.
    """

    id: int
    task_id: str
    kind: EventKind
    data: dict[str, Any]
    ts: float


class ErrorBody(_Model):
    """Every 4xx answer: what is wrong, and which field when one is to blame."""

    detail: str
    field: str | None = None
