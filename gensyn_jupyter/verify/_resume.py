"""Resume a recorded run from another provider's checkpoint (that provider was lost).

The resumed run is the same cell, loaded from the same bundle and seeded the
same way; its loops are fast-forwarded to the checkpoint's position without
running their bodies (the replay's own :func:`restore_at`), the full state is
restored there, and the recorder takes over the lost run's leaves, interval
and next due step. Every later leaf is then the one an uninterrupted run
would take, so the commitment's Merkle root is the same too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import CheckpointPost
from ._replay import restore_at

if TYPE_CHECKING:
    from ._record import Recording

__all__ = ["resume_recording"]


def resume_recording(recording: Recording, point: CheckpointPost) -> None:
    """Arm ``recording`` (entered: leaf 0 taken, seeded) to continue from ``point``.

    The checkpoint's files must be in the recording's checkpoint directory.

    Raises
    ------
    ValueError
        When the recording keeps no checkpoints, or its start state is not the
        lost run's (another bundle).
    CheckpointMismatch
        When the checkpoint file does not hash to its leaf.
    """
    recorder = recording.recorder
    if recorder.store is None:
        raise ValueError("a resumed run needs a checkpoint directory to read the checkpoint from")
    if recorder.failure is not None:
        raise ValueError(f"the resumed run could not take its start state: {recorder.failure}")
    recorder.resume(point.leaves, point.dues, point.every, point.next_due)
    restore_at(recording.session, recorder.store, point.leaves[-1], point.leaf)
