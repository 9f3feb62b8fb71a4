from __future__ import annotations

import pytest
import torch

from gensyn_jupyter.provider._placement import place_on_device


def test_cpu_lease_moves_nothing() -> None:
    ns: dict[str, object] = {"device": "cpu", "X": torch.ones(2)}
    placement = place_on_device(ns, list(ns), device="cpu")
    assert placement.lines == [] and placement.remapped == {}
    assert ns["device"] == "cpu"


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU box)"
)
def test_cuda_lease_moves_model_optimizer_tensors_and_remaps_device() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    ns: dict[str, object] = {"model": model, "opt": opt, "X": torch.ones(3, 2), "device": "cpu"}
    placement = place_on_device(ns, list(ns), device="cuda:0")
    lines = placement.lines
    assert next(model.parameters()).is_cuda
    assert ns["X"].is_cuda  # type: ignore[union-attr]
    assert ns["device"] == "cuda"
    state = opt.state[next(model.parameters())]["momentum_buffer"]
    assert state.is_cuda
    assert any("remapped `device`" in line for line in lines)
    ns["X"] = ns["X"] * 2  # type: ignore[operator]
    placement.restore(ns)
    assert ns["device"] == "cpu"  # the kernel gets its own device name back
    assert not ns["X"].is_cuda and ns["X"].sum().item() == 12  # type: ignore[union-attr]
