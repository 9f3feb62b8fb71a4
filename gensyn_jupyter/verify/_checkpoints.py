"""Checkpoints of a run: when to take them, the files they live in, the commitment they make.

Every ``k`` optimizer steps the recorder takes the state at the next loop
boundary (the first ``next()`` of a tracked ``for`` loop after the step: the
iteration's body, ``scheduler.step()`` and ``zero_grad()`` included, has
finished), hashes it and saves it as ``step-<step>-<kind>.safetensors`` +
``.json`` (the tree codec of :mod:`gensyn_jupyter.capture`: never a pickle).
Where no loop is live at the step (a ``while`` loop) or a second step comes
first, the state is taken inside the step (kind ``hook``: a replay cannot start
there, only end there).

Without ``--checkpoint-every`` the interval is chosen from the step count: it
starts at 4 steps, or at a power of two scaled to the model (one step per 2
MiB of parameters and buffers), and doubles whenever more than 32 checkpoints
exist, dropping every other one; so there are at most 32 interior leaves (at
least 16 once the run is longer than 32 intervals) whatever the number of
steps, and two providers running the same bundle make the same leaves
(nothing depends on timing).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import CheckpointLeaf, Commitment, DeterminismClass, LeafKind
from ._merkle import MerkleTree
from ._session import RunSession, globals_hint
from ._state import StateDigest, state_digest

__all__ = ["AUTO_MAX_CHECKPOINTS", "CheckpointRecorder", "CheckpointStore"]

AUTO_MAX_CHECKPOINTS = 32
EXPLICIT_MAX_CHECKPOINTS = 1024
_MODEL_BYTES_PER_STEP = 2 * 1024 * 1024
_AUTO_FIRST_INTERVAL = 4


class CheckpointStore:
    """A directory of checkpoints, one ``.safetensors`` + ``.json`` pair per leaf."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def stem(step: int, kind: str) -> str:
        return f"step-{step:010d}-{kind}"

    def save(
        self, step: int, kind: LeafKind, tree: Any, hint: dict[str, Any], digest: StateDigest
    ) -> None:
        from safetensors.torch import save_file

        from ..capture import encode_tree

        self.directory.mkdir(parents=True, exist_ok=True)
        structure, tensors = encode_tree({"state": tree, "globals": hint})
        stem = self.directory / self.stem(step, kind)
        save_file(tensors, str(stem) + ".safetensors")
        meta = {
            "version": 1,
            "step": step,
            "kind": kind,
            "leaf": "0x" + digest.leaf.hex(),
            "parts": digest.parts_hex(),
            "structure": structure,
        }
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, sort_keys=True, separators=(",", ":")))
        tmp.replace(str(stem) + ".json")

    def load(self, step: int, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The state tree and the globals hint of a checkpoint (tensors on the CPU)."""
        from safetensors.torch import load_file

        from ..capture import decode_tree

        stem = self.directory / self.stem(step, kind)
        meta = json.loads(Path(str(stem) + ".json").read_text())
        value = decode_tree(meta["structure"], load_file(str(stem) + ".safetensors"))
        if not isinstance(value, dict) or set(value) != {"state", "globals"}:
            raise ValueError(f"{stem}: not a checkpoint")
        return value["state"], value["globals"]

    def remove(self, step: int, kind: str) -> None:
        stem = self.directory / self.stem(step, kind)
        for suffix in (".json", ".safetensors"):
            Path(str(stem) + suffix).unlink(missing_ok=True)


@dataclass
class _Entry:
    step: int
    kind: LeafKind
    due: int
    digest: StateDigest
    resumable: bool
    saved: bool


class CheckpointRecorder:
    """Takes the leaves of a run and builds its :class:`Commitment`."""

    def __init__(
        self,
        session: RunSession,
        *,
        every: int | None,
        store: CheckpointStore | None,
        seed: int,
        determinism: DeterminismClass,
    ) -> None:
        self.session = session
        self.store = store
        self.seed = seed
        self.determinism = determinism
        self.explicit = every is not None
        self.every = every or 1
        self.cap = EXPLICIT_MAX_CHECKPOINTS if self.explicit else AUTO_MAX_CHECKPOINTS
        self.entries: list[_Entry] = []
        self.seconds = 0.0
        """Time spent hashing and saving checkpoints."""
        self.taken = 0
        self.notes: list[str] = []
        self._next_due = self.every
        self._pending: int | None = None
        self.failure: str | None = None
        """Why this run has no commitment (hashing or saving a checkpoint failed)."""
        self.on_saved: Callable[[dict[str, Any]], None] | None = None
        """Called with :meth:`progress` after each resumable checkpoint is saved."""

    def start(self) -> None:
        """Leaf 0: the state before the cell runs; hook the session."""
        self._guard(self._start)

    def _start(self) -> None:
        started = time.perf_counter()
        tree, _found = self.session.take()
        digest = state_digest(tree)
        if not self.explicit:
            self.every = _auto_interval(tree)
            self._next_due = self.every
        self.entries.append(_Entry(0, "start", 0, digest, True, False))
        self.seconds += time.perf_counter() - started
        self.session.on_counted_step = self._on_step
        self.session.on_boundary = self._on_boundary

    def _on_step(self, step: int) -> None:
        self._guard(self._step, step)

    def _on_boundary(self) -> None:
        self._guard(self._boundary)

    def _guard(self, action: Any, *args: Any) -> None:
        """Run a recording action; a failure drops the commitment, never the user's cell."""
        if self.failure is not None:
            return
        try:
            action(*args)
        except Exception as exc:  # e.g. a lazy module's uninitialized parameter
            self.failure = f"{type(exc).__name__}: {exc}"
            self.session.on_counted_step = None
            self.session.on_boundary = None

    def _step(self, step: int) -> None:
        if self._pending is not None:
            due, self._pending = self._pending, None
            self._take("hook", due)  # a second step came before any loop boundary
        elif step >= self._next_due:
            due = step - step % self.every
            self._next_due = due + self.every
            if self.session.tracker.depth == 0:
                self._take("hook", due)
            else:
                self._pending = due

    def _boundary(self) -> None:
        if self._pending is not None:
            due, self._pending = self._pending, None
            self._take("boundary", due)

    def _take(self, kind: LeafKind, due: int) -> None:
        started = time.perf_counter()
        tree, found = self.session.take()
        digest = state_digest(tree)
        resumable = kind == "boundary" and not found.anonymous
        if self.store is not None:
            hint = (
                globals_hint(
                    self.session.namespace, found=found, initial_ids=self.session.initial_ids
                )
                if resumable
                else {}
            )
            self.store.save(digest.step, kind, tree, hint, digest)
        entry = _Entry(digest.step, kind, due, digest, resumable, self.store is not None)
        self.entries.append(entry)
        self.taken += 1
        interior = len(self.entries) - 1
        if interior > self.cap:
            self._thin()
        self.seconds += time.perf_counter() - started
        kept = self.entries[-1] is entry  # thinning may have dropped it
        if self.on_saved is not None and entry.saved and entry.resumable and kept:
            self.on_saved(self.progress())

    def progress(self) -> dict[str, Any]:
        """The leaves so far and when the next one is due (a resume point, see ``resume``)."""
        return {
            "leaf": len(self.entries) - 1,
            "step": self.entries[-1].step,
            "leaves": [_leaf(e).model_dump(mode="json") for e in self.entries],
            "dues": [e.due for e in self.entries],
            "every": self.every,
            "next_due": self._next_due,
        }

    def resume(
        self, leaves: list[CheckpointLeaf], dues: list[int], every: int, next_due: int
    ) -> None:
        """Continue another run's recording: its leaves so far, its interval, its next due step.

        Called after :meth:`start` (whose leaf 0 must equal the run's) and before the cell runs.
        """
        start = "0x" + self.entries[0].digest.leaf.hex() if self.entries else None
        if start != leaves[0].leaf:
            raise ValueError(
                f"the start state hashes to {start}, the run resumed committed {leaves[0].leaf}: "
                "not the same inputs"
            )
        self.entries = [
            _Entry(
                leaf.step,
                leaf.kind,
                due,
                StateDigest(step=leaf.step, parts={}, leaf=bytes.fromhex(leaf.leaf[2:])),
                leaf.resumable,
                leaf.kind != "start",
            )
            for leaf, due in zip(leaves, dues, strict=True)
        ]
        self.every = every
        self._next_due = next_due
        self._pending = None

    def _thin(self) -> None:
        self.every *= 2
        kept: list[_Entry] = []
        for entry in self.entries:
            if entry.kind == "start" or entry.due % self.every == 0:
                kept.append(entry)
            elif entry.saved and self.store is not None:
                self.store.remove(entry.step, entry.kind)
        self.entries = kept
        self._next_due = (self._next_due + self.every - 1) // self.every * self.every

    def finish(self) -> Commitment | None:
        """The end leaf (the state the cell left) and the commitment of every leaf.

        None when a checkpoint could not be taken (see :attr:`failure`).
        """
        self.session.on_counted_step = None
        self.session.on_boundary = None
        if self.failure is None:
            try:
                return self._finish()
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
        return None

    def _finish(self) -> Commitment:
        started = time.perf_counter()
        tree, found = self.session.take()
        digest = state_digest(tree)
        if self.store is not None:
            self.store.save(digest.step, "end", tree, {}, digest)
        self.entries.append(_Entry(digest.step, "end", digest.step, digest, False, True))
        self.seconds += time.perf_counter() - started
        if found.anonymous:
            self.notes.append(
                "an optimizer stepped that no variable of the cell names: replays start "
                "from the beginning"
            )
        if not found.modules and not found.optimizers:
            self.notes.append("no module or optimizer in the cell's variables: nothing trained")
        tree_ = MerkleTree([e.digest.leaf for e in self.entries])
        return Commitment(
            root="0x" + tree_.root.hex(),
            leaves=[_leaf(e) for e in self.entries],
            checkpoint_every=self.every,
            seed=self.seed,
            determinism=self.determinism,
            final_parts=digest.parts_hex(),
            notes=list(self.notes),
        )


def _leaf(entry: _Entry) -> CheckpointLeaf:
    return CheckpointLeaf(
        step=entry.step,
        kind=entry.kind,
        leaf="0x" + entry.digest.leaf.hex(),
        resumable=entry.resumable,
    )


def _auto_interval(tree: Any) -> int:
    """A power of two, at least 4: one step per 2 MiB of model (parameters and buffers).

    The cost of a checkpoint grows with the state, and so, roughly, does a
    step's: a 10M-parameter model starts at 32 steps between checkpoints.
    """
    per = max(
        _AUTO_FIRST_INTERVAL, math.ceil(_tensor_bytes(tree["modules"]) / _MODEL_BYTES_PER_STEP)
    )
    return 1 << (per - 1).bit_length()


def _tensor_bytes(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0
