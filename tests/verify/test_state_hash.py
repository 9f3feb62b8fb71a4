"""The state hash: the same state gives the same leaf, any change of it another."""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gensyn_jupyter.verify import (
    CheckpointStore,
    RunSession,
    canonical_bytes,
    digest,
    find_objects,
    seed_everything,
    state_digest,
)


def _namespace() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    for _ in range(2):
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        sched.step()
    return {"model": model, "opt": opt, "sched": sched, "alias": model, "x": torch.ones(2)}


def _leaf(namespace: dict[str, Any]) -> bytes:
    session = RunSession(namespace, device="cpu")
    seed_everything(7)
    return state_digest(session.take()[0]).leaf


def test_the_same_state_hashes_alike_and_aliases_count_once() -> None:
    ns = _namespace()
    first = _leaf(ns)
    assert _leaf(ns) == first
    found = find_objects(ns)
    assert list(found.modules) == ["alias"]  # sorted names: the first one wins
    assert list(found.optimizers) == ["opt"] and list(found.schedulers) == ["sched"]
    ns2 = dict(ns)
    del ns2["alias"]
    assert _leaf(ns2) != first  # the part is named after its variable


@pytest.mark.parametrize(
    "change",
    [
        "weight",
        "buffer",
        "grad",
        "grad_none",
        "adam_moment",
        "adam_step",
        "lr",
        "scheduler",
        "torch_rng",
        "python_rng",
        "numpy_rng",
    ],
)
def test_any_change_of_the_state_changes_the_leaf(change: str) -> None:
    ns = _namespace()
    before = _leaf(ns)
    model, opt, sched = ns["model"], ns["opt"], ns["sched"]
    with torch.no_grad():
        if change == "weight":
            w = model[0].weight
            w.view(-1)[3] = torch.nextafter(w.view(-1)[3], torch.tensor(10.0))  # one ulp
        elif change == "buffer":
            model[1].running_mean[0] += 1e-6
        elif change == "grad":
            model[2].bias.grad[0] += 1e-6
        elif change == "grad_none":
            model[2].bias.grad = None
        elif change == "adam_moment":
            opt.state[model[0].weight]["exp_avg_sq"][0, 0] *= 1.0000001
        elif change == "adam_step":
            opt.state[model[0].weight]["step"] += 1
        elif change == "lr":
            opt.param_groups[0]["lr"] = 0.0100001
        elif change == "scheduler":
            sched.last_epoch += 1
    seed_everything(7)
    if change == "torch_rng":
        torch.rand(1)
    elif change == "python_rng":
        random.random()
    elif change == "numpy_rng":
        np.random.rand()
    session = RunSession(ns, device="cpu")
    assert state_digest(session.take()[0]).leaf != before


def test_canonical_encoding_ignores_layout_but_not_dtype_shape_or_type() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    same = [t, t.t().contiguous().t(), torch.nn.Parameter(t.clone())]
    assert len({digest(x, domain=b"t") for x in same}) == 1
    different = [t.double(), t.reshape(3, 2), t.reshape(6), t + 1e-7]
    assert len({digest(x, domain=b"t") for x in [t, *different]}) == 5
    assert canonical_bytes(OrderedDict([("b", 1), ("a", 2)])) == canonical_bytes({"a": 2, "b": 1})
    distinct = [1, 1.0, True, "1", [1], (1, 2), {1: 2}, {"1": 2}, None, b"1"]
    assert len({canonical_bytes(v) for v in distinct}) == len(distinct)
    assert canonical_bytes([1, 2]) == canonical_bytes((1, 2))  # tuples travel as lists


def test_a_saved_checkpoint_loads_back_to_the_same_leaf(tmp_path: Path) -> None:
    ns = _namespace()
    ns["gen"] = torch.Generator().manual_seed(3)
    ns["np_rng"] = np.random.default_rng(5)
    session = RunSession(ns, device="cpu")
    tree, _found = session.take()
    digest_before = state_digest(tree)
    store = CheckpointStore(tmp_path)
    store.save(2, "boundary", tree, {"losses": [1.0, float("nan")]}, digest_before)
    loaded, hint = store.load(2, "boundary")
    assert state_digest(loaded) == digest_before
    assert hint["losses"][0] == 1.0
    assert sorted(tree["rng"]["generators"]) == ["gen", "np_rng"]
