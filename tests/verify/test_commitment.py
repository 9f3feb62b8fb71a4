"""What the worker commits: leaves by the interval, files kept for verifiers, the root on chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from IPython.core.magic_arguments import parse_argstring
from safetensors.torch import load

from gensyn_jupyter.capture import decode_results
from gensyn_jupyter.kernel import TrainOptions, train_cell
from gensyn_jupyter.kernel._errors import GensynError
from gensyn_jupyter.kernel._magics import GensynMagics
from gensyn_jupyter.protocol import ResultManifest
from gensyn_jupyter.provider._payout import checkpoint_root, output_hash
from gensyn_jupyter.verify import AUTO_MAX_CHECKPOINTS, MerkleTree, part_digest, verify_proof

from ._harness import data, run_worker

LOOP = """\
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(STEPS):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def _steps(n: int) -> dict[str, object]:
    return {**data(), "STEPS": n}


def test_the_default_interval_keeps_at_most_32_checkpoints_and_their_files(
    tmp_path: Path,
) -> None:
    ran = run_worker(tmp_path, LOOP, _steps(300))
    commitment = ran.commitment
    interior = commitment.leaves[1:-1]
    k = commitment.checkpoint_every
    assert k & (k - 1) == 0 and AUTO_MAX_CHECKPOINTS // 2 <= len(interior) <= AUTO_MAX_CHECKPOINTS
    assert [leaf.step for leaf in interior] == [k * (i + 1) for i in range(len(interior))]
    assert commitment.leaves[-1].step == 300 and commitment.leaves[-1].kind == "end"
    files = sorted(p.name for p in ran.store.directory.glob("*.safetensors"))
    expected = [
        ran.store.stem(leaf.step, leaf.kind) + ".safetensors" for leaf in commitment.leaves[1:]
    ]
    assert files == sorted(expected)  # thinned checkpoints were deleted
    assert commitment.determinism.device_type == "cpu" and commitment.determinism.threads >= 1
    # The root is the Merkle root of the leaves; each leaf proves against it.
    leaves = [bytes.fromhex(leaf.leaf[2:]) for leaf in commitment.leaves]
    tree = MerkleTree(leaves)
    assert "0x" + tree.root.hex() == commitment.root
    assert verify_proof(tree.root, leaves[3], 3, len(leaves), tree.proof(3))


def test_two_runs_of_one_bundle_commit_the_same_root(tmp_path: Path) -> None:
    ns = _steps(20)
    first = run_worker(tmp_path / "a", LOOP, ns, every=5)
    second = run_worker(tmp_path / "b", LOOP, ns, every=5)
    assert first.commitment.root == second.commitment.root
    assert first.commitment.seed == second.commitment.seed


def test_checkpoint_every_zero_commits_nothing(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, LOOP, _steps(5), every=0)
    assert ran.manifest.error is None and ran.manifest.commitment is None
    assert ran.manifest.steps == 5


def test_a_failing_cell_has_no_commitment_and_keeps_its_cell_line(tmp_path: Path) -> None:
    source = "for i in range(3):\n    if i == 2:\n        raise ValueError('boom')\n"
    ran = run_worker(tmp_path, source, {"torch": torch})
    assert ran.manifest.commitment is None
    assert ran.manifest.error is not None and ran.manifest.error.type == "ValueError"
    assert ran.manifest.error.cell_line == 4  # line 3 of the body, below the magic line


def test_the_chain_gets_the_merkle_root_and_the_output_hash_apart(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, LOOP, _steps(8), every=4)
    assert checkpoint_root(ran.manifest) == bytes.fromhex(ran.commitment.root[2:])
    assert checkpoint_root(ran.manifest) != output_hash(ran.manifest)
    plain = ResultManifest(duration_s=1.0)
    assert checkpoint_root(plain) == output_hash(plain)


def test_the_returned_weights_are_the_last_leafs(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, LOOP, _steps(6), every=4)
    values = (tmp_path / "work" / "out" / "values.json").read_bytes()
    tensors = (tmp_path / "work" / "out" / "tensors.safetensors").read_bytes()
    assert load(tensors)
    state = decode_results(values, tensors)["model"]
    digest = part_digest("module:model", dict(state))
    assert "0x" + digest.hex() == ran.commitment.final_parts["module:model"]


def test_a_state_that_cannot_be_hashed_drops_the_commitment_not_the_run(tmp_path: Path) -> None:
    source = (
        "extra = torch.nn.Module()\n"
        "extra.register_buffer('table', torch.eye(3).to_sparse())\n"  # no dense bytes to hash
        "w = torch.zeros(4, 1, requires_grad=True)\n"
        "opt = torch.optim.SGD([w], lr=0.1)\n"
        "for step in range(6):\n"
        "    loss = (X @ w - Y).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "del extra\n"
    )
    ran = run_worker(tmp_path, source, _steps(6), every=2)
    assert ran.manifest.error is None and ran.manifest.steps == 6
    assert ran.manifest.commitment is None


def test_an_error_in_a_loops_iterable_shows_no_tracker_frames(tmp_path: Path) -> None:
    source = (
        "def batches():\n"
        "    yield 1\n"
        "    raise KeyError('no more data')\n"
        "for b in batches():\n"
        "    pass\n"
    )
    ran = run_worker(tmp_path, source, {"torch": torch})
    error = ran.manifest.error
    assert error is not None and error.type == "KeyError"
    assert [(f.name, f.lineno) for f in error.frames] == [("<module>", 5), ("batches", 4)]


def test_the_magic_sends_checkpoint_every_in_the_bundle() -> None:
    args = parse_argstring(GensynMagics.gensyn_train, "--checkpoint-every 7")
    assert args.checkpoint_every == 7
    with pytest.raises(GensynError, match="--checkpoint-every -1"):
        GensynMagics(shell=None).gensyn_train("--checkpoint-every -1", "x = 1")

    sent: dict[str, bytes] = {}

    class _Stop(Exception):
        pass

    class _Blobs:
        def upload_missing(self, blobs: dict[str, bytes]) -> int:
            sent.update(blobs)
            return 0

    class _Client:
        blobs = _Blobs()
        base_url = "http://stub"

        def list_providers(self) -> list[object]:
            return []

        def create_task(self, spec: object) -> object:
            raise _Stop

    with pytest.raises(_Stop):
        train_cell(
            "y = 1",
            {},
            options=TrainOptions(checkpoint_every=7),
            client=_Client(),  # type: ignore[arg-type]
            say=lambda _: None,
        )
    bundles = [json.loads(b) for b in sent.values() if b.startswith(b"{")]
    assert [b["checkpoint_every"] for b in bundles if "source" in b] == [7]
