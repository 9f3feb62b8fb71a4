from __future__ import annotations

import pytest
import torch

from gensyn_jupyter.kernel._loading import apply_results
from gensyn_jupyter.protocol import OutputInfo


def _info(name: str, kind: str, note: str = "") -> OutputInfo:
    return OutputInfo.model_validate({"name": name, "kind": kind, "type_name": "t", "note": note})


def test_modules_and_optimizers_keep_their_identity() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trained = torch.nn.Linear(2, 2)
    trained_opt = torch.optim.SGD(trained.parameters(), lr=0.05, momentum=0.9)
    trained(torch.ones(1, 2)).sum().backward()
    trained_opt.step()
    ns = {"model": model, "opt": opt}
    notes = apply_results(
        ns,
        {"model": trained.state_dict(), "opt": trained_opt.state_dict()},
        [_info("model", "module_state"), _info("opt", "optimizer_state")],
        handle_name="_gensyn",
    )
    assert ns["model"] is model and ns["opt"] is opt
    assert torch.equal(model.weight, trained.weight)
    assert opt.param_groups[0]["lr"] == 0.05
    assert "momentum_buffer" in opt.state[model.weight]
    assert notes == ["model: state loaded in place", "opt: state loaded in place"]


def test_tensor_of_same_shape_is_updated_in_place_others_assigned() -> None:
    w = torch.zeros(3)
    ns: dict[str, object] = {"w": w, "n": 1}
    apply_results(
        ns,
        {"w": torch.ones(3), "n": 5, "losses": [1.0, 0.5]},
        [_info("w", "tree"), _info("n", "tree"), _info("losses", "tree")],
        handle_name="_gensyn",
    )
    assert ns["w"] is w and torch.equal(w, torch.ones(3))
    assert ns["n"] == 5 and ns["losses"] == [1.0, 0.5]


def test_refused_and_new_modules_are_reported_not_bound() -> None:
    ns: dict[str, object] = {}
    notes = apply_results(
        ns,
        {"m2": torch.nn.Linear(1, 1).state_dict()},
        [_info("ds", "refused", "a dataset"), _info("m2", "module_state")],
        handle_name="res",
    )
    assert ns == {}
    assert notes[0] == "ds: not loaded (a dataset)"
    assert "res.outputs['m2']" in notes[1]


def test_state_that_does_not_fit_names_the_variable_and_changes_nothing() -> None:
    model = torch.nn.Linear(2, 2)
    before = model.weight.clone()
    with pytest.raises(RuntimeError, match="could not load the trained state into `model`"):
        apply_results(
            {"model": model},
            {"model": torch.nn.Linear(3, 3).state_dict()},
            [_info("model", "module_state")],
            handle_name="_gensyn",
        )
    assert torch.equal(model.weight, before)
