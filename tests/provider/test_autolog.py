from __future__ import annotations

from typing import Any

import torch

from gensyn_jupyter.provider._autolog import Autolog


def test_counts_steps_and_records_the_loss_of_each() -> None:
    batches: list[list[dict[str, Any]]] = []
    autolog = Autolog(emit=batches.append)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    expected = []
    autolog.install()
    try:
        for _ in range(5):
            loss = torch.nn.functional.mse_loss(model(x), y)
            expected.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        autolog.uninstall()
    autolog.flush()
    points = [p for batch in batches for p in batch]
    assert autolog.steps == 5
    assert [p["step"] for p in points] == [1, 2, 3, 4, 5]
    assert [round(p["value"], 5) for p in points] == [round(v, 5) for v in expected]
    # uninstalled: backward is torch's own again
    assert torch.Tensor.backward.__qualname__ == "Tensor.backward"


def test_second_optimizer_does_not_double_count() -> None:
    autolog = Autolog(emit=lambda points: None)
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    autolog.install()
    try:
        for _ in range(3):
            (a(torch.ones(1, 2)).sum() + b(torch.ones(1, 2)).sum()).backward()
            opt_a.step()
            opt_b.step()
    finally:
        autolog.uninstall()
    assert autolog.steps == 3
