"""The referee: in a replication dispute it replays the one segment where two providers
part ways and names the cheater; on a spot check it replays one segment of one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gensyn_jupyter.protocol import CheckpointLeaf, Commitment
from gensyn_jupyter.provider import CHEAT_MODES
from gensyn_jupyter.verify import CheckpointStore, MerkleTree, Ruling, rule_dispute, rule_segment

from ._harness import Ran
from .test_cheats import namespace, run_as


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    ns = namespace()
    out = {"honest": run_as(tmp_path_factory.mktemp("honest"), None, ns)[0]}
    for mode in CHEAT_MODES:
        out[mode] = run_as(tmp_path_factory.mktemp(mode), mode, ns)[0]
    out["honest-again"] = run_as(tmp_path_factory.mktemp("again"), None, ns)[0]
    return out


def _dispute(a: Ran, b: Ran, *, store_a: CheckpointStore | None = None) -> Ruling:
    return rule_dispute(
        a.bundle, a.read_blob, a.commitment, b.commitment, store_a or a.store, b.store
    )


def _tamper(store: CheckpointStore, step: int, kind: str) -> None:
    """Change one number in a stored checkpoint (what a provider would send to cover up)."""
    path = store.directory / (store.stem(step, kind) + ".safetensors")
    tensors = load_file(str(path))
    name = "state/modules/model/0.weight"
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, str(path))


def _size(store: CheckpointStore, leaf: CheckpointLeaf) -> int:
    """Bytes of a stored checkpoint (what a referee downloads)."""
    stem = store.directory / store.stem(leaf.step, leaf.kind)
    return sum(Path(str(stem) + suffix).stat().st_size for suffix in (".safetensors", ".json"))


def _with_leaf(commitment: Commitment, index: int, leaf: str) -> Commitment:
    """``commitment`` with leaf ``index`` replaced and its root recomputed (well-formed)."""
    leaves = [x.model_copy() for x in commitment.leaves]
    leaves[index] = leaves[index].model_copy(update={"leaf": leaf})
    root = MerkleTree([bytes.fromhex(x.leaf[2:]) for x in leaves]).root
    return commitment.model_copy(update={"leaves": leaves, "root": "0x" + root.hex()})


# Where each cheat first shows: stale/fake-loss/wrong-data undo a step in the
# first segment; skip trains steps 1-5 and skips 6-10; perturb adds noise at step 7.
FIRST_BAD = {"stale": 1, "fake-loss": 1, "wrong-data": 1, "skip": 2, "perturb": 2}


@pytest.mark.parametrize("swapped", [False, True], ids=["cheater-is-b", "cheater-is-a"])
@pytest.mark.parametrize("mode", CHEAT_MODES)
def test_replication_names_the_cheater(runs: dict[str, Ran], mode: str, swapped: bool) -> None:
    honest, cheat = runs["honest"], runs[mode]
    a, b = (cheat, honest) if swapped else (honest, cheat)
    ruling = _dispute(a, b)
    d = FIRST_BAD[mode]
    leaves = honest.commitment.leaves
    assert ruling.cheater == ("a" if swapped else "b"), ruling.reason
    assert ruling.leaf == d
    assert ruling.referee_leaf == leaves[d].leaf != cheat.commitment.leaves[d].leaf
    assert ruling.committed == {"a": a.commitment.leaves[d].leaf, "b": b.commitment.leaves[d].leaf}
    # The referee ran one segment, from the checkpoint both agree on, not the run.
    assert ruling.steps_replayed == leaves[d].step - leaves[d - 1].step == 5
    assert ruling.checkpoint_bytes == (_size(a.store, leaves[d - 1]) if d > 1 else 0)
    assert f"leaf {d} (step {leaves[d].step})" in ruling.reason
    assert "\n" not in ruling.reason


def test_two_honest_providers_agree(runs: dict[str, Ran]) -> None:
    honest, again = runs["honest"], runs["honest-again"]
    assert honest.commitment.root == again.commitment.root
    with pytest.raises(ValueError, match="same root"):
        _dispute(honest, again)


def test_runs_with_different_seeds_slash_nobody(runs: dict[str, Ran], tmp_path: Path) -> None:
    # Capturing the same objects again gives another bundle hash, hence another seed.
    other = run_as(tmp_path, None, namespace())[0]
    honest = runs["honest"]
    assert other.commitment.seed != honest.commitment.seed
    ruling = rule_dispute(
        honest.bundle,
        honest.read_blob,
        honest.commitment,
        other.commitment,
        honest.store,
        other.store,
    )
    assert ruling.cheater is None and ruling.leaf == 0, ruling.reason
    assert "both commitments replay as committed" in ruling.reason


def test_a_tampered_checkpoint_from_a_is_replaced_by_bs(runs: dict[str, Ran]) -> None:
    cheat, honest = runs["perturb"], runs["honest"]
    agreed = cheat.commitment.leaves[1]
    _tamper(cheat.store, agreed.step, agreed.kind)
    try:
        ruling = _dispute(cheat, honest)
    finally:
        # Undo for the other tests: the cheater's leaf 1 is the honest one.
        src = honest.store.directory / honest.store.stem(agreed.step, agreed.kind)
        dst = cheat.store.directory / cheat.store.stem(agreed.step, agreed.kind)
        for suffix in (".safetensors", ".json"):
            Path(str(dst) + suffix).write_bytes(Path(str(src) + suffix).read_bytes())
    assert ruling.cheater == "a", ruling.reason
    assert ruling.steps_replayed == 5
    assert "hashes to" in ruling.reason
    assert ruling.checkpoint_bytes == 2 * _size(honest.store, agreed)  # both fetched


def test_nondeterminism_slashes_nobody(runs: dict[str, Ran]) -> None:
    honest, cheat = runs["honest"], runs["perturb"]
    # Both providers' leaf 2 differ from what the cell gives (as if the hardware drifted).
    odd = _with_leaf(honest.commitment, 2, "0x" + "11" * 32)
    ruling = rule_dispute(
        honest.bundle, honest.read_blob, odd, cheat.commitment, honest.store, cheat.store
    )
    assert ruling.cheater is None
    assert ruling.leaf == 2 and "nobody is slashed" in ruling.reason
    assert ruling.referee_leaf == honest.commitment.leaves[2].leaf


def test_leaves_that_do_not_hash_to_the_root(runs: dict[str, Ran]) -> None:
    honest, cheat = runs["honest"], runs["stale"]
    forged = cheat.commitment.model_copy(update={"leaves": honest.commitment.leaves})
    ruling = rule_dispute(
        honest.bundle, honest.read_blob, honest.commitment, forged, honest.store, cheat.store
    )
    assert ruling.cheater == "b" and "do not hash to its committed root" in ruling.reason
    spot = rule_segment(honest.bundle, honest.read_blob, forged, cheat.store, 3)
    assert spot.cheater == "provider" and spot.steps_replayed == 0


def test_honest_segments_pass(runs: dict[str, Ran]) -> None:
    honest = runs["honest"]
    leaves = honest.commitment.leaves
    for segment in (0, 5, len(leaves) - 2):
        ruling = rule_segment(
            honest.bundle, honest.read_blob, honest.commitment, honest.store, segment
        )
        assert ruling.cheater is None, ruling.reason
        assert ruling.referee_leaf == leaves[segment + 1].leaf
        assert ruling.steps_replayed == leaves[segment + 1].step - leaves[segment].step
        assert (ruling.checkpoint_bytes > 0) == (segment > 0)


@pytest.mark.parametrize("mode", CHEAT_MODES)
def test_a_bad_segment_is_fraud(runs: dict[str, Ran], mode: str) -> None:
    cheat = runs[mode]
    segment = FIRST_BAD[mode] - 1
    ruling = rule_segment(cheat.bundle, cheat.read_blob, cheat.commitment, cheat.store, segment)
    assert ruling.cheater == "provider", ruling.reason
    assert ruling.committed == {"provider": cheat.commitment.leaves[segment + 1].leaf}
    assert ruling.referee_leaf == runs["honest"].commitment.leaves[segment + 1].leaf
    # It is a segment after the cheat's only bad one: the replay agrees.
    if mode == "perturb":
        later = rule_segment(cheat.bundle, cheat.read_blob, cheat.commitment, cheat.store, 4)
        assert later.cheater is None, later.reason


def test_a_checkpoint_the_provider_cannot_produce_is_fraud(
    runs: dict[str, Ran], tmp_path: Path
) -> None:
    again = run_as(tmp_path, None, namespace(seed=1))[0]
    leaf = again.commitment.leaves[3]
    _tamper(again.store, leaf.step, leaf.kind)
    ruling = rule_segment(again.bundle, again.read_blob, again.commitment, again.store, 3)
    assert ruling.cheater == "provider" and "hashes to" in ruling.reason
    assert ruling.steps_replayed == 0 and ruling.checkpoint_bytes > 0
    again.store.remove(leaf.step, leaf.kind)
    ruling = rule_segment(again.bundle, again.read_blob, again.commitment, again.store, 3)
    assert ruling.cheater == "provider" and "cannot produce checkpoint 3" in ruling.reason
    # The segment before it never needed that checkpoint.
    fine = rule_segment(again.bundle, again.read_blob, again.commitment, again.store, 2)
    assert fine.cheater is None, fine.reason
