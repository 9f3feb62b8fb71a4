"""The referee: re-executes one segment of a committed run and says who cheated.

Two rulings (DESIGN "Life of a task", step 5):

* replication (:func:`rule_dispute`): two providers ran the same bundle and
  committed different roots. Bisection finds the first leaf ``d`` where they
  differ; the referee replays ``d - 1 -> d`` from the checkpoint both agree
  on and the one whose leaf ``d`` is not the replayed one cheated.
* spot checks (:func:`rule_segment`): one sampled segment of one provider's
  run is replayed from its own checkpoint; a different leaf, or a checkpoint
  that does not hash to the leaf committed for it, is fraud.

A fast-forward replay that disagrees is repeated from the start of the cell
before anyone is blamed (loop state a checkpoint cannot carry would
otherwise look like cheating).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..protocol import Bundle, Commitment
from ._checkpoints import CheckpointStore
from ._merkle import MerkleTree, first_divergent_leaf
from ._replay import CheckpointMismatch, Prepare, ReplayResult, replay_segment

__all__ = ["Cheater", "Ruling", "rule_dispute", "rule_segment"]

Cheater = Literal["a", "b", "provider"]


@dataclass(frozen=True)
class Ruling:
    """What the referee found.

    Attributes
    ----------
    cheater : "a", "b", "provider" or None
        Who committed a state the cell does not produce; None: nobody is slashed.
    leaf : int
        The leaf judged (the end of the replayed segment).
    referee_leaf : str or None
        The leaf as the referee replayed it (``0x`` hex); None when the
        referee did not need to replay (or the run never got there).
    committed : dict of str to str
        The committed leaf ``leaf`` of each party (``a``, ``b`` or ``provider``).
    steps_replayed : int
        Optimizer steps the referee ran, every attempt together.
    checkpoint_bytes : int
        Size of the checkpoints the referee fetched (0 for a replay from leaf 0).
    seconds : float
        Wall time of the ruling.
    reason : str
        One line for a human.
    """

    cheater: Cheater | None
    leaf: int
    referee_leaf: str | None
    committed: dict[str, str] = field(default_factory=dict)
    steps_replayed: int = 0
    checkpoint_bytes: int = 0
    seconds: float = 0.0
    reason: str = ""


@dataclass
class _Replayed:
    leaf: str | None = None
    steps: int = 0
    fetched: int = 0
    notes: list[str] = field(default_factory=list)


def _short(leaf: str | None) -> str:
    return "nothing" if leaf is None else leaf[:12] + "…"


def _hex(result: ReplayResult) -> str | None:
    return None if result.leaf is None else "0x" + result.leaf.hex()


def _consistent(commitment: Commitment) -> bool:
    """True when the revealed leaves hash to the committed root."""
    tree = MerkleTree([bytes.fromhex(leaf.leaf[2:]) for leaf in commitment.leaves])
    return "0x" + tree.root.hex() == commitment.root


def _checkpoint_size(store: CheckpointStore, commitment: Commitment, index: int) -> int:
    leaf = commitment.leaves[index]
    stem = store.directory / store.stem(leaf.step, leaf.kind)
    paths = [Path(str(stem) + suffix) for suffix in (".safetensors", ".json")]
    return sum(p.stat().st_size for p in paths if p.exists())


def _begin(commitment: Commitment, start: int) -> int:
    """The leaf a replay from ``start`` loads (the nearest resumable one at or before it)."""
    while start > 0 and not commitment.leaves[start].resumable:
        start -= 1
    return start


def _replay(
    bundle: Bundle,
    read_blob: Callable[[str], bytes],
    commitment: Commitment,
    stores: list[tuple[str, CheckpointStore]],
    leaf: int,
    accept: set[str],
    device: str,
    prepare: Prepare | None,
) -> _Replayed:
    """Replay ``leaf - 1 -> leaf`` from the first store whose checkpoint is genuine.

    Falls back to a replay from the start when no store has it, when the
    fast-forward fails, or when the replayed leaf is none of ``accept``.
    Raises CheckpointMismatch or FileNotFoundError only when ``stores`` has
    one store and its checkpoint is bad or missing.
    """
    out = _Replayed()
    if leaf == 0:  # the start state itself
        first = replay_segment(
            bundle,
            read_blob,
            commitment=commitment,
            store=None,
            start=0,
            end=1,
            device=device,
            prepare=prepare,
        )
        out.leaf, out.steps = "0x" + first.digests[0].leaf.hex(), first.steps_run
        return out
    begin = _begin(commitment, leaf - 1)
    for owner, store in stores if begin > 0 else []:
        out.fetched += _checkpoint_size(store, commitment, begin)
        try:
            result = replay_segment(
                bundle,
                read_blob,
                commitment=commitment,
                store=store,
                start=leaf - 1,
                end=leaf,
                device=device,
                prepare=prepare,
                fallback=False,
            )
        except (CheckpointMismatch, FileNotFoundError) as exc:
            if len(stores) == 1:
                raise
            out.notes.append(f"{owner}'s checkpoint {begin}: {exc}")
            continue
        except Exception as exc:  # the fast-forward failed, or the cell raised off its path
            out.notes.append(f"fast-forward to leaf {begin} failed ({exc})")
            break
        out.steps += result.steps_run
        out.leaf = _hex(result)
        if out.leaf in accept:
            return out
        out.notes.append(f"the replay from leaf {begin} gave {_short(out.leaf)}")
        break
    result = replay_segment(
        bundle,
        read_blob,
        commitment=commitment,
        store=None,
        start=0,
        end=leaf,
        device=device,
        prepare=prepare,
    )
    out.notes.append("replayed from the start")
    out.steps += result.steps_run
    out.leaf = _hex(result)
    out.notes.extend(result.notes)
    return out


def _divergence(a: Commitment, b: Commitment) -> int:
    """The first leaf where two commitments differ (hash or position)."""
    if len(a.leaves) == len(b.leaves):
        trees = [MerkleTree([bytes.fromhex(x.leaf[2:]) for x in c.leaves]) for c in (a, b)]
        found = first_divergent_leaf(len(a.leaves), trees[0].node, trees[1].node)
        if found is not None:
            return found.index
    for index, (x, y) in enumerate(zip(a.leaves, b.leaves, strict=False)):
        if (x.leaf, x.step, x.kind) != (y.leaf, y.step, y.kind):
            return index
    return min(len(a.leaves), len(b.leaves)) - 1


def rule_dispute(
    bundle: Bundle,
    read_blob: Callable[[str], bytes],
    a: Commitment,
    b: Commitment,
    store_a: CheckpointStore,
    store_b: CheckpointStore,
    device: str = "cpu",
    *,
    prepare: Prepare | None = None,
) -> Ruling:
    """Settle a replication dispute: which of two providers committed a state the cell never had.

    Parameters
    ----------
    bundle, read_blob
        The task's bundle and a reader of its blobs.
    a, b : Commitment
        The two providers' commitments of the same bundle.
    store_a, store_b : CheckpointStore
        Their checkpoints; the agreed one is taken from ``store_a``, from
        ``store_b`` when ``a``'s does not hash to the agreed leaf.
    device : str
        Where the referee replays.
    prepare : callable, optional
        Moves the loaded inputs to ``device`` (the provider's placement),
        as for :func:`replay_segment`.

    Raises
    ------
    ValueError
        When the roots are equal: there is nothing to dispute.
    """
    started = time.perf_counter()
    if a.root == b.root:
        raise ValueError("the two commitments have the same root: there is no dispute")
    parties: tuple[tuple[Cheater, Commitment, Commitment], ...] = (("a", a, b), ("b", b, a))
    for name, c, other in parties:
        if not _consistent(c) and _consistent(other):
            return Ruling(
                cheater=name,
                leaf=0,
                referee_leaf=None,
                committed={"a": a.root, "b": b.root},
                seconds=time.perf_counter() - started,
                reason=f"{name}'s revealed leaves do not hash to its committed root {c.root}",
            )
    d = _divergence(a, b)
    committed = {"a": a.leaves[d].leaf, "b": b.leaves[d].leaf}
    accept = set(committed.values())
    got: dict[str, str | None] = {}
    steps = fetched = 0
    notes: list[str] = []
    done: dict[tuple[object, ...], str | None] = {}
    for name, c in (("a", a), ("b", b)):
        key = (c.seed, tuple((x.step, x.kind, x.resumable) for x in c.leaves[: d + 1]))
        if key not in done:
            replayed = _replay(
                bundle, read_blob, c, [("a", store_a), ("b", store_b)], d, accept, device, prepare
            )
            done[key] = replayed.leaf
            steps, fetched = steps + replayed.steps, fetched + replayed.fetched
            notes.extend(replayed.notes)
        got[name] = done[key]
    honest = [name for name in ("a", "b") if got[name] == committed[name]]
    referee = got["a"] if "a" in honest or "b" not in honest else got["b"]
    step = a.leaves[d].step
    where = f"leaf {d} (step {step})"
    cheater: Cheater | None
    if len(honest) == 1:
        cheater = "b" if honest == ["a"] else "a"
        reason = (
            f"{where}: the referee's replay gives {_short(committed[honest[0]])} as "
            f"{honest[0]} committed; {cheater} committed {_short(committed[cheater])}"
        )
    elif honest:
        cheater = None
        reason = f"{where}: both commitments replay as committed (seed or positions differ)"
    else:
        cheater = None
        reason = (
            f"{where}: neither commitment matches the referee's replay "
            f"({_short(referee)}): nondeterminism, nobody is slashed"
        )
    if notes:
        reason += f" ({'; '.join(notes)})"
    return Ruling(
        cheater=cheater,
        leaf=d,
        referee_leaf=referee,
        committed=committed,
        steps_replayed=steps,
        checkpoint_bytes=fetched,
        seconds=time.perf_counter() - started,
        reason=reason,
    )


def rule_segment(
    bundle: Bundle,
    read_blob: Callable[[str], bytes],
    commitment: Commitment,
    store: CheckpointStore,
    segment: int,
    device: str = "cpu",
    *,
    prepare: Prepare | None = None,
) -> Ruling:
    """Judge one spot-checked segment ``segment -> segment + 1`` of a provider's run.

    Parameters
    ----------
    bundle, read_blob
        The task's bundle and a reader of its blobs.
    commitment : Commitment
        The provider's commitment.
    store : CheckpointStore
        The provider's checkpoints.
    segment : int
        The segment (see :func:`~gensyn_jupyter.verify.sample_segments`).
    device : str
        Where the verifier replays.
    prepare : callable, optional
        Moves the loaded inputs to ``device``, as for :func:`replay_segment`.

    Returns
    -------
    Ruling
        ``cheater="provider"`` when the replayed leaf differs from the
        committed one, when the checkpoint to start from does not hash to its
        committed leaf or is missing, or when the leaves do not hash to the root.
    """
    started = time.perf_counter()
    leaves = commitment.leaves
    if not 0 <= segment < len(leaves) - 1:
        raise IndexError(f"segment {segment} is not in a commitment of {len(leaves)} leaves")
    end = segment + 1
    committed = {"provider": leaves[end].leaf}

    def ruling(cheater: Cheater | None, reason: str, replayed: _Replayed) -> Ruling:
        return Ruling(
            cheater=cheater,
            leaf=end,
            referee_leaf=replayed.leaf,
            committed=committed,
            steps_replayed=replayed.steps,
            checkpoint_bytes=replayed.fetched,
            seconds=time.perf_counter() - started,
            reason=reason,
        )

    where = f"segment {segment} (steps {leaves[segment].step}..{leaves[end].step})"
    if not _consistent(commitment):
        return ruling(
            "provider", f"the leaves do not hash to the root {commitment.root}", _Replayed()
        )
    begin = _begin(commitment, segment)
    try:
        replayed = _replay(
            bundle,
            read_blob,
            commitment,
            [("provider", store)],
            end,
            {leaves[end].leaf},
            device,
            prepare,
        )
    except CheckpointMismatch as exc:
        fetched = _Replayed(fetched=_checkpoint_size(store, commitment, begin))
        return ruling("provider", f"{where}: {exc}", fetched)
    except FileNotFoundError:
        return ruling(
            "provider", f"{where}: the provider cannot produce checkpoint {begin}", _Replayed()
        )
    notes = f" ({'; '.join(replayed.notes)})" if replayed.notes else ""
    if replayed.leaf == leaves[end].leaf:
        return ruling(None, f"{where}: the replay gives the committed leaf{notes}", replayed)
    return ruling(
        "provider",
        f"{where}: the replay gives {_short(replayed.leaf)}, the provider committed "
        f"{_short(leaves[end].leaf)}{notes}",
        replayed,
    )
