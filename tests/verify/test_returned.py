"""The kernel checks a provider's commitment against the weights it loaded."""

from __future__ import annotations

from pathlib import Path

import torch

from gensyn_jupyter.capture import decode_results
from gensyn_jupyter.verify import check_returned

from ._harness import data, run_worker

LOOP = """\
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(STEPS):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def _returned(tmp_path: Path) -> tuple[object, dict[str, object]]:
    ns = data()
    ns["STEPS"] = 6
    ran = run_worker(tmp_path, LOOP, dict(ns), every=4)
    out = tmp_path / "work" / "out"
    state = decode_results(
        (out / "values.json").read_bytes(), (out / "tensors.safetensors").read_bytes()
    )
    model = torch.nn.Linear(4, 1)
    model.load_state_dict(state["model"])
    return ran.commitment, {"model": model}


def test_honest_weights_match_the_last_checkpoint(tmp_path: Path) -> None:
    commitment, namespace = _returned(tmp_path)
    check = check_returned(commitment, namespace)
    assert check.ok and check.matched == ["model"] and check.mismatched == []
    assert "the returned model matches the last checkpoint" in check.describe()
    assert check.checkpoints == len(commitment.leaves)


def test_weights_other_than_the_committed_ones_are_called_out(tmp_path: Path) -> None:
    commitment, namespace = _returned(tmp_path)
    model = namespace["model"]
    with torch.no_grad():
        model.weight.add_(1e-6)  # one nudge: not the weights the provider committed to
    check = check_returned(commitment, namespace)
    assert not check.ok and check.mismatched == ["model"]
    assert "do NOT match the committed checkpoint" in check.describe()


def test_a_forged_commitment_is_called_out(tmp_path: Path) -> None:
    commitment, namespace = _returned(tmp_path)
    leaves = list(commitment.leaves)
    leaves[1] = leaves[1].model_copy(update={"leaf": "0x" + "00" * 32})
    forged_leaf = commitment.model_copy(update={"leaves": leaves})
    assert not check_returned(forged_leaf, namespace).root_ok
    parts = dict(commitment.final_parts)
    parts["module:model"] = "0x" + "11" * 32
    forged_parts = commitment.model_copy(update={"final_parts": parts})
    check = check_returned(forged_parts, namespace)
    assert check.root_ok and not check.last_leaf_ok and not check.ok
    assert "last checkpoint does NOT match" in check.describe()
