"""Run a cell with commitments on: deterministic mode, seeds, tracked loops, checkpoints."""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from pathlib import Path
from types import CodeType, TracebackType
from typing import Any

from ..protocol import CheckpointPost, Commitment
from ._checkpoints import CheckpointRecorder, CheckpointStore
from ._determinism import (
    NondeterminismWatch,
    determinism_class,
    deterministic_mode,
    seed_everything,
)
from ._loops import FastForwardError, instrument
from ._session import RunSession

__all__ = ["CELL_FILENAME", "Recording"]

CELL_FILENAME = "<gensyn-cell>"
"""The file name cell code is compiled under (tracebacks map it back to the cell)."""


class Recording:
    """The recorded run of one cell.

    Use as a context manager around ``exec(recording.code, namespace)``; then
    :meth:`finish` gives the commitment. Entering seeds every generator with
    ``seed``, turns deterministic algorithms on and takes leaf 0; leaving puts
    the process settings back.

    Parameters
    ----------
    source : str
        The cell.
    namespace : MutableMapping
        The namespace the cell runs in, with its inputs already loaded and
        placed on ``device``.
    every : int or None
        ``--checkpoint-every``; None chooses from the step count.
    directory : Path or None
        Where checkpoints are saved (None: hashed only).
    seed : int
        See :func:`seed_for`.
    device : str
        ``cpu`` or ``cuda:N``.
    """

    def __init__(
        self,
        source: str,
        namespace: MutableMapping[str, Any],
        *,
        every: int | None,
        directory: Path | None,
        seed: int,
        device: str,
        filename: str = CELL_FILENAME,
    ) -> None:
        self.code: CodeType
        self.code, self.loops = instrument(source, filename)
        self.session = RunSession(namespace, device=device)
        self.recorder = CheckpointRecorder(
            self.session,
            every=every,
            store=CheckpointStore(directory) if directory is not None else None,
            seed=seed,
            determinism=determinism_class(device),
        )
        self._seed = seed
        self._device = device
        self._stack = contextlib.ExitStack()
        self._watch = NondeterminismWatch()
        self.resume: CheckpointPost | None = None
        """Set before entering to continue a lost provider's run from its checkpoint."""

    def __enter__(self) -> Recording:
        self._stack.enter_context(deterministic_mode())
        self._stack.enter_context(self._watch)
        self.recorder.determinism = determinism_class(self._device)
        seed_everything(self._seed)
        self.recorder.start()  # a failure here only drops the commitment
        if self.resume is not None:
            from ._resume import resume_recording

            resume_recording(self, self.resume)
        self.session.install()
        self._stack.callback(self.session.uninstall)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def finish(self) -> Commitment | None:
        """The end leaf and the commitment (call after the cell ran without error).

        None when a checkpoint could not be hashed or saved (:attr:`failure` says
        why); the cell's own run is never failed by its recording.
        """
        if self.resume is not None and self.session.tracker.fast_forwarding:
            raise FastForwardError(
                f"the resumed cell ended before the position of the checkpoint at step "
                f"{self.resume.step}: {self.session.tracker.failure or 'it was never reached'}"
            )
        commitment = self.recorder.finish()
        if commitment is not None:
            commitment.nondeterministic_ops = list(self._watch.ops)
        return commitment

    @property
    def failure(self) -> str | None:
        """Why the run has no commitment, if it has none."""
        return self.recorder.failure

    @property
    def overhead_seconds(self) -> float:
        """Time spent hashing and saving checkpoints."""
        return self.recorder.seconds
