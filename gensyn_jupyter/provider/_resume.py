"""The worker's side of resumable runs: announce each checkpoint; resume a lost run.

Each resumable checkpoint the recorder saves is announced on the control pipe
(``{"type": "checkpoint", ...}``, the recorder's progress: leaves so far,
interval, next due step); the provider uploads it and posts it on the lease
(:mod:`._checkpoint_upload`). A job with ``resume`` (a lease whose first
provider was lost) continues from such a checkpoint: the recording restores
it at its loop position (:func:`gensyn_jupyter.verify.resume_recording`) and
autolog numbers the steps from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..verify import Recording
    from ._autolog import Autolog

__all__ = ["follow_checkpoints"]


class _Sender(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


def follow_checkpoints(
    recording: Recording, job: dict[str, Any], control: _Sender, autolog: Autolog
) -> None:
    """Announce the recording's checkpoints on ``control``; arm a resume when ``job`` has one."""
    from ..protocol import CheckpointPost

    def saved(progress: dict[str, Any]) -> None:
        control.send({"type": "checkpoint", **progress})

    recording.recorder.on_saved = saved
    resume = job.get("resume")
    if not resume:
        return
    point = CheckpointPost.model_validate(resume)
    recording.resume = point
    autolog.steps = point.step  # the steps before the checkpoint are not run again
    control.send(
        {
            "type": "log",
            "message": f"resuming from the checkpoint at step {point.step} "
            f"(leaf {point.leaf}): the loops skip ahead to it without running again",
        }
    )
