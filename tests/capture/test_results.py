"""encode_results / decode_results: what comes back, as JSON + safetensors only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors.torch import load, save

from gensyn_jupyter.capture import (
    build_bundle,
    decode_results,
    encode_results,
    load_inputs,
)
from gensyn_jupyter.protocol import Bundle

from .conftest import QUICKSTART


def _provider_run(ns: dict[str, Any], cell: str) -> tuple[Bundle, dict[str, Any], dict[str, Any]]:
    """What a worker does: load inputs, snapshot the trees, run the cell."""
    prepared = build_bundle(cell, ns)
    bundle = prepared.bundle
    inputs = load_inputs(bundle, prepared.blobs.__getitem__)
    trees = bundle.model_copy(update={"inputs": [i for i in bundle.inputs if i.kind == "tree"]})
    initial = load_inputs(trees, prepared.blobs.__getitem__)
    final = {"__name__": "__main__", **inputs}
    exec(cell, final)
    return bundle, initial, final


def _names(bundle: Bundle) -> list[str]:
    return list(dict.fromkeys([*bundle.outputs, *bundle.returns]))


def test_trained_model_and_optimizer_load_into_the_kernels_objects(ns: dict[str, Any]) -> None:
    bundle, initial, final = _provider_run(ns, QUICKSTART)
    encoded = encode_results(final, _names(bundle), initial=initial)
    kinds = {o.name: o.kind for o in encoded.outputs}
    assert kinds == {
        "epoch": "tree", "i": "tree", "loss": "tree", "losses": "tree",
        "model": "module_state", "opt": "optimizer_state",
    }  # fmt: skip
    assert "X" not in kinds and "y" not in kinds  # unchanged inputs are not sent
    assert {o.name: o.type_name for o in encoded.outputs}["model"] == "__main__.Net"
    values = decode_results(encoded.values_json, encoded.tensors)
    assert values["losses"] == final["losses"] and values["epoch"] == 4
    model, opt = ns["model"], ns["opt"]
    model.load_state_dict(values["model"])
    opt.load_state_dict(values["opt"])
    for mine, theirs in zip(model.parameters(), final["model"].parameters(), strict=True):
        assert torch.equal(mine, theirs)
    buffers = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    remote = [final["opt"].state[p]["momentum_buffer"] for p in final["model"].parameters()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, remote, strict=True))
    # and the kernel can keep training with them
    exec(QUICKSTART, ns)


def test_adam_state_with_tensor_steps_round_trips() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    encoded = encode_results({"opt": opt}, ["opt"])
    values = decode_results(encoded.values_json, encoded.tensors)
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    fresh.load_state_dict(values["opt"])
    assert fresh.param_groups[0]["lr"] == 0.01
    assert torch.equal(next(iter(fresh.state.values()))["step"], torch.tensor(1.0))


def test_changed_inputs_come_back_and_unchanged_ones_do_not() -> None:
    snapshot = {"a": torch.ones(3), "b": torch.ones(3), "cfg": {"lr": 0.1}, "n": 1}
    final = {"a": torch.ones(3), "b": torch.full((3,), 2.0), "cfg": {"lr": 0.1}, "n": 2}
    encoded = encode_results(final, ["a", "b", "cfg", "n"], initial=snapshot)
    assert [o.name for o in encoded.outputs] == ["b", "n"]
    values = decode_results(encoded.values_json, encoded.tensors)
    assert torch.equal(values["b"], final["b"]) and values["n"] == 2
    # dtype change counts as a change
    encoded = encode_results({"a": torch.ones(3, dtype=torch.float64)}, ["a"], initial=snapshot)
    assert [o.name for o in encoded.outputs] == ["a"]


def test_a_value_that_is_its_snapshot_is_sent() -> None:
    t = torch.ones(2)
    encoded = encode_results({"t": t}, ["t"], initial={"t": t})
    assert [o.name for o in encoded.outputs] == ["t"]


def test_refused_values_carry_a_note(ns: dict[str, Any]) -> None:
    cell = (
        "ds = torch.utils.data.TensorDataset(X, y)\n"
        "def helper():\n    return 1\n"
        "gen = (i for i in range(3))\n"
        "mixed = [1, ds]\n"
        "import math\n"
        "acc = accuracy(model, X, y)\n"
    )
    bundle, initial, final = _provider_run(ns, cell)
    encoded = encode_results(final, _names(bundle), initial=initial)
    info = {o.name: o for o in encoded.outputs}
    assert "math" not in info  # imports never come back
    assert "accuracy" not in info  # the kernel's own function (load_inputs made it)
    assert info["acc"].kind == "tree"
    assert info["ds"].kind == "refused"
    assert info["ds"].note == (
        "`ds` is a torch.utils.data.dataset.TensorDataset created on the provider; only "
        "modules, optimizers, schedulers, tensors and plain data come back (the kernel never "
        "unpickles provider data). Return its tensors or state_dict instead."
    )
    assert info["helper"].kind == "refused"
    assert "functions and classes do not" in info["helper"].note
    assert info["gen"].kind == "refused" and "generator" in info["gen"].note
    assert info["mixed"].kind == "refused" and "mixed[1]" in info["mixed"].note
    values = decode_results(encoded.values_json, encoded.tensors)
    assert set(values) == {o.name for o in encoded.outputs if o.kind != "refused"}


def test_schedulers() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    lam = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.9**e)
    opt.step()
    step.step()
    plateau.step(1.0)
    encoded = encode_results(
        {"step": step, "plateau": plateau, "lam": lam}, ["step", "plateau", "lam"]
    )
    assert {o.name: o.kind for o in encoded.outputs} == {
        "step": "scheduler_state", "plateau": "scheduler_state", "lam": "scheduler_state"
    }  # fmt: skip
    values = decode_results(encoded.values_json, encoded.tensors)
    fresh = torch.optim.lr_scheduler.StepLR(
        torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0), step_size=1, gamma=0.5
    )
    fresh.load_state_dict(values["step"])
    assert fresh.last_epoch == step.last_epoch


def test_a_module_whose_state_is_not_plain_data_is_refused() -> None:
    class Odd(torch.nn.Module):
        def get_extra_state(self) -> Any:
            return object()

        def set_extra_state(self, state: Any) -> None:
            pass

    encoded = encode_results({"odd": Odd(), "ok": torch.nn.Linear(1, 1)}, ["odd", "ok"])
    info = {o.name: o for o in encoded.outputs}
    assert info["odd"].kind == "refused"
    assert "odd.state_dict()['_extra_state'] is an object" in info["odd"].note
    assert info["ok"].kind == "module_state"
    assert set(decode_results(encoded.values_json, encoded.tensors)) == {"ok"}


def test_all_tensors_in_one_blob_keyed_by_output_name() -> None:
    model = torch.nn.Linear(2, 2)
    final = {"model": model, "w": model.weight, "hist": [torch.zeros(1), torch.ones(1)]}
    encoded = encode_results(final, ["model", "w", "hist"])  # w shares storage with model
    assert encoded.tensors is not None
    keys = set(load(encoded.tensors))
    assert keys == {"model/weight", "model/bias", "w", "hist/0", "hist/1"}
    document = json.loads(encoded.values_json)
    assert (
        encoded.values_json == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    )  # canonical
    assert document["version"] == 1
    assert document["outputs"]["w"] == {
        "kind": "tree", "structure": {"$tensor": "w", "parameter": True, "requires_grad": True}
    }  # fmt: skip
    values = decode_results(encoded.values_json, encoded.tensors)
    assert torch.equal(values["w"], model.weight) and torch.equal(values["hist"][1], torch.ones(1))


def test_no_tensors_means_no_blob() -> None:
    encoded = encode_results({"n": 3, "s": "x"}, ["n", "s", "missing"])
    assert encoded.tensors is None
    assert decode_results(encoded.values_json, None) == {"n": 3, "s": "x"}


def _doc(outputs: Any, version: Any = 1) -> bytes:
    return json.dumps({"version": version, "outputs": outputs}).encode()


@pytest.mark.parametrize(
    ("values_json", "tensors", "match"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[1]", None, "exactly"),
        (json.dumps({"version": 1}).encode(), None, "exactly"),
        (_doc({}, version=2), None, "version"),
        (_doc({}, version="1"), None, "version"),
        (_doc({}, version=True), None, "version"),
        (_doc({}, version=1.0), None, "version"),
        (json.dumps({"version": 1, "outputs": {}, "x": 1}).encode(), None, "exactly"),
        (_doc([]), None, "must be an object"),
        (_doc({"a": {"kind": "pickle", "structure": 1}}), None, "unknown kind"),
        (_doc({"a": {"kind": "tree"}}), None, "exactly"),
        (_doc({"a": {"kind": "tree", "structure": {"$pickle": "x"}}}), None, "unknown tag"),
        (_doc({"a": {"kind": "tree", "structure": {"$tensor": "gone"}}}), None, "missing"),
        (
            _doc({"a": {"kind": "tree", "structure": {"$tensor": "gone"}}}),
            save({"other": torch.zeros(1)}),
            "missing",
        ),
        (_doc({"a": {"kind": "module_state", "structure": [1]}}), None, "must be a dict"),
        (_doc({}), b"\xff" * 16, "not valid safetensors"),
        (b"[" * 100_000 + b"]" * 100_000, None, "not valid JSON|deeper"),
        (_doc({"__builtins__": {"kind": "tree", "structure": 1}}), None, "plain variable"),
        (_doc({"a.b": {"kind": "tree", "structure": 1}}), None, "plain variable"),
        (_doc({"class": {"kind": "tree", "structure": 1}}), None, "plain variable"),
    ],
)
def test_decode_rejects_malformed_results(
    values_json: bytes, tensors: bytes | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        decode_results(values_json, tensors)


@pytest.fixture
def pickle_events() -> Iterator[list[str]]:
    events: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event.startswith("pickle."):
            events.append(f"{event}{args}")

    sys.addaudithook(hook)  # cannot be removed: it switches itself off instead
    try:
        yield events
    finally:
        active[0] = False


def test_decode_results_never_unpickles(ns: dict[str, Any], pickle_events: list[str]) -> None:
    bundle, initial, final = _provider_run(ns, QUICKSTART + "state = {0: (1.5, torch.float16)}\n")
    pickle_events.clear()  # loading the inputs unpickled (provider side): that is allowed
    encoded = encode_results(final, _names(bundle), initial=initial)
    assert not pickle_events  # encoding does not pickle either
    values = decode_results(encoded.values_json, encoded.tensors)
    assert values["state"] == {0: (1.5, torch.float16)}
    assert not pickle_events
    # the hook does see unpickling when it happens
    import pickle

    pickle.loads(pickle.dumps(torch.nn.Linear(1, 1)))
    assert any(e.startswith("pickle.find_class") for e in pickle_events)


def test_the_kernels_own_objects_are_skipped_silently() -> None:
    ds = torch.utils.data.TensorDataset(torch.zeros(2))

    def fn() -> int:
        return 1

    final = {"ds": ds, "fn": fn, "Linear": torch.nn.Linear, "torch": torch}
    encoded = encode_results(final, list(final), initial={"ds": ds, "fn": fn, "Linear": 0})
    assert [(o.name, o.kind) for o in encoded.outputs] == [("Linear", "refused")]


def test_dunder_names_never_go_back() -> None:
    encoded = encode_results({"__name__": "__main__", "x": 1}, ["__name__", "x"])
    assert [o.name for o in encoded.outputs] == ["x"]


def test_a_failing_state_dict_is_refused_not_fatal() -> None:
    class Broken(torch.nn.Module):
        def state_dict(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no state today")

    encoded = encode_results({"m": Broken()}, ["m"])
    assert encoded.outputs[0].kind == "refused" and "no state today" in encoded.outputs[0].note
