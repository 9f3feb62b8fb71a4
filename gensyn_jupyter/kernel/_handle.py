"""The result handle a ``%%gensyn_train`` cell leaves in ``_gensyn`` (or ``-o NAME``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What happened to one remote training task.

    Attributes
    ----------
    task_id
        The coordinator's id of the task.
    status
        Its last known state (``settled``, ``failed``, ``cancelled``, ...).
    provider
        Name of the provider that ran it, when one did.
    history
        Every metric point streamed back: ``{"step", "name", "value"}``.
    duration
        Seconds the cell ran on the provider.
    outputs
        What came back, by name: state dicts of modules and optimizers,
        tensors and plain data, as decoded from safetensors + JSON.
    refused
        Names the provider could not send back, with the reason.
    """

    task_id: str
    network: str
    status: str = "queued"
    provider: str | None = None
    device: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    duration: float | None = None
    steps: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    stdout: str = ""

    @property
    def losses(self) -> list[float]:
        """The loss of every optimizer step, in order."""
        return [float(p["value"]) for p in self.history if p["name"] == "loss"]

    def __repr__(self) -> str:
        parts = [f"gensyn task {self.task_id}: {self.status}"]
        if self.provider:
            parts.append(f"on {self.provider}")
        if self.steps:
            parts.append(f"{self.steps} steps")
        if self.duration is not None:
            parts.append(f"{self.duration:.2f} s")
        losses = self.losses
        if losses:
            parts.append(f"loss {losses[0]:.4g} → {losses[-1]:.4g}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "<" + ", ".join(parts) + ">"
