from __future__ import annotations

from typing import Any

import pytest
import torch

import gensyn_jupyter as gensyn
from gensyn_jupyter.provider._autolog import Autolog


def _train(steps: int, *, accumulate: int = 1, scaler: Any = None) -> tuple[Autolog, list[Any]]:
    batches: list[list[dict[str, Any]]] = []
    autolog = Autolog(emit=batches.append)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    expected = []
    autolog.install()
    try:
        for _ in range(steps):
            micro = []
            for _ in range(accumulate):
                loss = torch.nn.functional.mse_loss(model(x), y)
                micro.append(loss.item())
                (scaler.scale(loss) if scaler else loss).backward()
            expected.append(sum(micro) / len(micro))
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad()
    finally:
        autolog.uninstall()
    autolog.flush()
    return autolog, [p for batch in batches for p in batch] + [expected]


def test_counts_steps_and_records_the_loss_of_each() -> None:
    autolog, points = _train(5)
    expected = points.pop()
    assert autolog.steps == 5
    assert [p["step"] for p in points] == [1, 2, 3, 4, 5]
    assert [p["value"] for p in points] == pytest.approx(expected, rel=1e-6)
    assert torch.Tensor.backward.__qualname__ == "Tensor.backward"  # uninstalled


def test_gradient_accumulation_counts_steps_not_backwards() -> None:
    autolog, points = _train(4, accumulate=3)
    expected = points.pop()
    assert autolog.steps == 4
    assert [p["step"] for p in points] == [1, 2, 3, 4]
    assert [p["value"] for p in points] == pytest.approx(expected, rel=1e-5)


def test_amp_grad_scaler_records_the_unscaled_loss() -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    autolog, points = _train(3, scaler=scaler)
    expected = points.pop()
    assert autolog.steps == 3
    assert [p["value"] for p in points] == pytest.approx(expected, rel=1e-5)


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


def test_gensyn_log_reaches_the_stream_remotely_and_does_nothing_locally() -> None:
    gensyn.log(accuracy=0.5)  # no sink: nothing happens, nothing raises
    batches: list[list[dict[str, Any]]] = []
    autolog = Autolog(emit=batches.append)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    autolog.install()
    try:
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        gensyn.log(accuracy=torch.tensor(0.75), lr=0.1)
        gensyn.log(step=10, val_loss=2.5)
    finally:
        autolog.uninstall()
    autolog.flush()
    logged = {(p["name"], p["step"]): p["value"] for batch in batches for p in batch}
    assert logged[("accuracy", 1)] == 0.75 and logged[("lr", 1)] == 0.1
    assert logged[("val_loss", 10)] == 2.5
    gensyn.log(accuracy=1.0)  # uninstalled: a no-op again
