"""Task states and verification modes: one enum each, shared by every part."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TERMINAL_STATES", "TaskState", "VerifyMode"]


class TaskState(StrEnum):
    """Where a task is in its life (see DESIGN: draft -> ... -> settled)."""

    DRAFT = "draft"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    RUNNING = "running"
    COMMITTED = "committed"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DISPUTED = "disputed"
    SLASHED = "slashed"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """True when nothing more will happen to the task."""
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {
        TaskState.SETTLED,
        TaskState.CANCELLED,
        TaskState.FAILED,
        TaskState.SLASHED,
        TaskState.EXPIRED,
    }
)


class VerifyMode(StrEnum):
    """How a task's result is checked (``--verify``)."""

    NONE = "none"
    SPOT = "spot"
    REPLICATE = "replicate"
