"""Segment replay: from committed checkpoint i, re-run the cell's own loop up to leaf j.

The replay loads the bundle's inputs afresh, seeds as the run did, and runs
the instrumented cell. From a resumable checkpoint it fast-forwards the loops
to the checkpoint's position without running their bodies, restores the
state there, and runs until the step (and loop boundary) of leaf j, whose
state it hashes; the cell is stopped there. Leaf 0 is the start: a replay
from it runs the cell from the beginning. A checkpoint that cannot be resumed
(``hook`` kind, an optimizer the cell does not name) sends the replay back to
the nearest earlier one that can, the start at worst, and the result says so.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol import Bundle, CheckpointLeaf, Commitment
from ._checkpoints import CheckpointStore
from ._determinism import deterministic_mode, seed_everything
from ._loops import FastForwardError, instrument
from ._record import CELL_FILENAME
from ._session import RunSession
from ._state import StateDigest, state_digest

__all__ = [
    "CheckpointMismatch",
    "ReplayError",
    "ReplayResult",
    "checkpoint_digest",
    "replay_segment",
    "restore_at",
]

Prepare = Callable[[MutableMapping[str, Any]], None]


class CheckpointMismatch(ValueError):
    """A stored checkpoint does not hash to the leaf committed for it (tampered or lost)."""


class ReplayError(RuntimeError):
    """The cell failed during a replay from the start."""


class _Done(BaseException):
    """Every target leaf is hashed: stop the cell."""


@dataclass
class ReplayResult:
    """What a replay produced.

    Attributes
    ----------
    start, end : int
        Leaf indices asked for.
    started_from : int
        Leaf the replay actually began at (``start``, or an earlier resumable one).
    fast_forwarded : bool
        True when the loops were fast-forwarded to a checkpoint (not run from the start).
    digests : dict of int to StateDigest
        Every leaf reached after ``started_from`` (and leaf 0 on a replay from the start).
    steps_run : int
        Optimizer steps run after the state was restored.
    seconds : float
    notes : list of str
        Why the replay started earlier than asked, when it did.
    """

    start: int
    end: int
    started_from: int
    fast_forwarded: bool
    digests: dict[int, StateDigest] = field(default_factory=dict)
    steps_run: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def replayed_from_start(self) -> bool:
        return self.started_from == 0

    @property
    def leaf(self) -> bytes | None:
        """The hash of leaf ``end`` as replayed (None when the run never got there)."""
        found = self.digests.get(self.end)
        return found.leaf if found is not None else None

    def matches(self, commitment: Commitment) -> bool:
        """True when the replayed leaf ``end`` equals the committed one, bit for bit."""
        return self.leaf is not None and "0x" + self.leaf.hex() == commitment.leaves[self.end].leaf


def checkpoint_digest(store: CheckpointStore, leaf: CheckpointLeaf) -> StateDigest:
    """The digest of a stored checkpoint, to compare with its committed ``leaf``."""
    tree, _hint = store.load(leaf.step, leaf.kind)
    return state_digest(tree)


def restore_at(
    session: RunSession,
    store: CheckpointStore,
    leaf: CheckpointLeaf,
    index: int,
    on_restored: Callable[[], None] | None = None,
) -> None:
    """Make ``session``'s cell fast-forward to checkpoint ``index`` and restore its state there.

    Loads the checkpoint, checks it hashes to ``leaf``, and arms the loop
    tracker: when the cell (run next, instrumented) reaches the checkpoint's
    loop position, the state is restored and ``on_restored`` called. Used by
    segment replays and by a run resumed on another provider.

    Raises
    ------
    CheckpointMismatch
        When the stored checkpoint does not hash to ``leaf``.
    """
    tree, hint = store.load(leaf.step, leaf.kind)
    found = state_digest(tree)
    if "0x" + found.leaf.hex() != leaf.leaf:
        raise CheckpointMismatch(
            f"checkpoint {index} (step {leaf.step}) hashes to "
            f"0x{found.leaf.hex()}, the commitment says {leaf.leaf}"
        )

    def arrive() -> None:
        session.restore(tree, hint)
        if on_restored is not None:
            on_restored()

    session.tracker.fast_forward(tree["position"], arrive)


class _Follower:
    """Hashes the state at each target leaf, the way the recorder took it."""

    def __init__(self, session: RunSession, targets: list[tuple[int, CheckpointLeaf]]) -> None:
        self.session = session
        self.targets = targets
        self.digests: dict[int, StateDigest] = {}
        self.restored_at: int | None = None
        self._pending = False

    def on_step(self, step: int) -> None:
        if not self.targets:
            return
        leaf = self.targets[0][1]
        if self._pending or (step >= leaf.step and leaf.kind == "hook"):
            self._take()  # a second step before a boundary: the run went elsewhere
        elif step >= leaf.step and leaf.kind == "boundary":
            self._pending = True

    def on_boundary(self) -> None:
        if self._pending:
            self._take()

    def _take(self) -> None:
        self._pending = False
        tree, _found = self.session.take()
        index, _leaf = self.targets.pop(0)
        self.digests[index] = state_digest(tree)
        if not self.targets:
            raise _Done


def _replay_once(
    bundle: Bundle,
    read_blob: Callable[[str], bytes],
    commitment: Commitment,
    store: CheckpointStore | None,
    begin: int,
    end: int,
    device: str,
    prepare: Prepare | None,
) -> ReplayResult:
    from ..capture import load_inputs

    started = time.perf_counter()
    result = ReplayResult(start=begin, end=end, started_from=begin, fast_forwarded=begin > 0)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    namespace.update(load_inputs(bundle, read_blob))
    if prepare is not None:
        prepare(namespace)
    code, _count = instrument(bundle.source, CELL_FILENAME)
    leaves = commitment.leaves
    with deterministic_mode():
        seed_everything(commitment.seed)
        session = RunSession(namespace, device=device)
        follower = _Follower(session, [(i, leaves[i]) for i in range(begin + 1, end + 1)])
        if begin == 0:
            result.digests[0] = state_digest(session.take()[0])
        else:
            if store is None:
                raise ValueError("a replay from a checkpoint needs the checkpoint store")

            def arrived() -> None:
                follower.restored_at = session.steps

            restore_at(session, store, leaves[begin], begin, arrived)
        session.on_counted_step = follower.on_step
        session.on_boundary = follower.on_boundary
        session.install()
        try:
            exec(code, namespace)
        except _Done:
            pass
        finally:
            session.uninstall()
        if session.tracker.fast_forwarding:
            raise FastForwardError(
                session.tracker.failure or "the cell ended before the checkpoint's position"
            )
        if follower.targets and follower.targets[0][1].kind == "end":
            index, _leaf = follower.targets.pop(0)
            result.digests[index] = state_digest(session.take()[0])
    result.digests.update(follower.digests)
    restored = follower.restored_at if follower.restored_at is not None else 0
    result.steps_run = session.steps - restored
    result.seconds = time.perf_counter() - started
    return result


def replay_segment(
    bundle: Bundle,
    read_blob: Callable[[str], bytes],
    *,
    commitment: Commitment,
    store: CheckpointStore | None,
    start: int,
    end: int | None = None,
    device: str = "cpu",
    prepare: Prepare | None = None,
    fallback: bool = True,
) -> ReplayResult:
    """Replay leaves ``start``..``end`` of a committed run and hash the state at ``end``.

    Parameters
    ----------
    bundle, read_blob
        The task's bundle and a reader of its blobs (as the worker loads them).
    commitment : Commitment
        What the provider committed (leaves, seed, interval).
    store : CheckpointStore or None
        The provider's checkpoints (None: replay from the start only).
    start : int
        Leaf to begin at. A leaf that cannot be resumed makes the replay
        begin at the nearest earlier one that can (leaf 0 at worst).
    end : int, optional
        Last leaf to reach; ``start + 1`` by default.
    device : str
        Where to run (``prepare`` moves the inputs there, e.g. the provider's
        device placement).
    fallback : bool
        When fast-forwarding fails (the position cannot be reached, the cell
        raises, or the replayed leaf differs), replay again from the start
        before answering, so that a loop whose hidden Python state the
        checkpoint could not carry is not mistaken for cheating.

    Raises
    ------
    CheckpointMismatch
        When the stored checkpoint does not hash to its committed leaf.
    ReplayError
        When the cell raises during a replay from the start.
    """
    leaves = commitment.leaves
    end = start + 1 if end is None else end
    if not 0 <= start < end < len(leaves):
        raise IndexError(f"leaves {start}..{end} are not in a commitment of {len(leaves)}")
    begin = start
    notes: list[str] = []
    while begin > 0 and (not leaves[begin].resumable or store is None):
        begin -= 1
    if begin != start:
        notes.append(f"leaf {start} ({leaves[start].kind}) cannot be resumed: began at {begin}")
    if begin > 0:
        try:
            result = _replay_once(bundle, read_blob, commitment, store, begin, end, device, prepare)
        except FastForwardError as exc:
            if not fallback:
                raise
            notes.append(f"fast-forward to leaf {begin} failed ({exc}): replayed from the start")
        except Exception as exc:  # the cell itself, off its usual path
            if not fallback or isinstance(exc, CheckpointMismatch):
                raise
            notes.append(f"the cell raised during the fast-forward replay ({exc!r}): from start")
        else:
            if result.matches(commitment) or not fallback:
                result.start, result.notes = start, notes
                return result
            notes.append(f"the replay from leaf {begin} differs: replayed from the start")
    try:
        result = _replay_once(bundle, read_blob, commitment, store, 0, end, device, prepare)
    except FastForwardError as exc:  # pragma: no cover - nothing to fast-forward from 0
        raise ReplayError(str(exc)) from exc
    except Exception as exc:
        raise ReplayError(f"the cell raised during its replay: {exc!r}") from exc
    if "0x" + result.digests[0].leaf.hex() != leaves[0].leaf:
        notes.append("the start state differs from leaf 0: not this bundle's commitment")
    result.start, result.notes = start, notes
    return result
