"""The tree codec: round trips, and a decoder that accepts nothing else."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from gensyn_jupyter.capture import NotATreeError, decode_tree, encode_tree, is_tree


def _through_the_wire(value: Any) -> Any:
    """Encode, serialise as JSON + safetensors bytes, parse and decode."""
    structure, tensors = encode_tree(value)
    text = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    return decode_tree(json.loads(text), load(save(tensors)) if tensors else {})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )


def test_state_dict_of_a_real_model_round_trips() -> None:
    model = _model()
    model(torch.randn(5, 4))  # BatchNorm running stats, num_batches_tracked (int64)
    state = model.state_dict()
    back = _through_the_wire(state)
    assert set(back) == set(state)  # canonical JSON sorts keys; load_state_dict does not care
    assert _same(dict(state), back)
    fresh = _model()
    fresh.load_state_dict(back)
    assert torch.equal(fresh[0].weight, model[0].weight)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-3),
])  # fmt: skip
def test_optimizer_state_after_a_step_round_trips(make: Any) -> None:
    model = _model()
    opt = make(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = opt.state_dict()
    assert any(type(k) is int for k in state["state"])
    back = _through_the_wire(state)
    assert _same(state, back)
    if "step" in state["state"][0]:
        assert isinstance(back["state"][0]["step"], torch.Tensor)
    fresh_model = _model()
    fresh_opt = make(fresh_model.parameters())
    fresh_opt.load_state_dict(back)
    assert fresh_opt.state_dict()["param_groups"] == state["param_groups"]


def test_plain_values_tuples_nesting_and_keys() -> None:
    value = {
        "none": None, "flag": True, "n": -3, "big": 2**80, "x": 1.5, "s": "héllo",
        "tuple": (1, (2.0, "three"), []),
        "nested": [[{"deep": [1, 2]}], {}],
        "int_keys": {0: "a", 1: "b"},
        "mixed_keys": {(1, "a"): 1, None: 2, 2.5: 3, False: 4, "$dollar": 5},
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "size": torch.Size([2, 3]),
    }  # fmt: skip
    back = _through_the_wire(value)
    expected = dict(value, ordered={"b": 1, "a": 2}, size=(2, 3))
    assert _same(expected, back)


def test_numpy_arrays_and_scalars() -> None:
    value = {
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "strided": np.arange(10)[::2],
        "fortran": np.asfortranarray(np.ones((2, 3))),
        "big_endian": np.arange(3, dtype=">i4"),
        "readonly": np.frombuffer(b"\x01\x02", dtype=np.uint8),
        "scalars": [np.float64(0.5), np.int64(7), np.bool_(True), np.str_("s")],
    }
    back = _through_the_wire(value)
    assert isinstance(back["arr"], np.ndarray) and back["arr"].dtype == np.float32
    assert np.array_equal(back["strided"], np.arange(10)[::2])
    assert np.array_equal(back["fortran"], np.ones((2, 3)))
    assert back["big_endian"].tolist() == [0, 1, 2]
    assert back["readonly"].tolist() == [1, 2]
    assert back["scalars"] == [0.5, 7, True, "s"]
    assert [type(v) for v in back["scalars"]] == [float, int, bool, str]


def test_devices_and_dtypes() -> None:
    value = [torch.device("cpu"), torch.device("cuda:0"), torch.float32, torch.bfloat16]
    structure, _ = encode_tree(value)
    assert structure == [
        {"$device": "cpu"}, {"$device": "cuda:0"}, {"$dtype": "float32"}, {"$dtype": "bfloat16"}
    ]  # fmt: skip
    assert _through_the_wire(value) == value


def test_nan_and_infinities() -> None:
    value = {"loss": math.nan, "hi": math.inf, "lo": -math.inf, "t": torch.tensor([math.nan])}
    back = _through_the_wire(value)
    assert math.isnan(back["loss"]) and back["hi"] == math.inf and back["lo"] == -math.inf
    assert torch.isnan(back["t"]).all()


def test_shared_storage_is_cloned_and_the_same_tensor_keeps_one_key() -> None:
    base = torch.arange(10.0)
    value = {"a": base, "again": base, "view": base[2:5], "other_view": base.view(2, 5)}
    structure, tensors = encode_tree(value)
    assert structure["again"] == structure["a"]
    assert len(tensors) == 3
    blob = save(tensors)  # safetensors refuses shared memory: this must not raise
    back = decode_tree(structure, load(blob))
    assert back["a"] is back["again"]
    assert torch.equal(back["view"], torch.tensor([2.0, 3.0, 4.0]))
    assert torch.equal(back["other_view"], base.view(2, 5))
    # tied weights in a state dict
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    _, tied = encode_tree({"emb": emb.state_dict(), "head": head.state_dict()})
    save(tied)


def test_numpy_array_sharing_memory_with_a_tensor() -> None:
    arr = np.arange(4.0)
    _, tensors = encode_tree([arr, torch.from_numpy(arr)])
    save(tensors)


def test_tensors_come_back_detached_contiguous_on_cpu_with_flags() -> None:
    w = torch.randn(3, 4, requires_grad=True)
    p = torch.nn.Parameter(torch.randn(2))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    derived = w * 2
    value = {"w": w, "t": w.t(), "p": p, "frozen": frozen, "derived": derived}
    structure, tensors = encode_tree(value)
    assert structure["w"] == {"$tensor": "w", "requires_grad": True}
    assert structure["p"] == {"$tensor": "p", "requires_grad": True, "parameter": True}
    assert structure["frozen"] == {"$tensor": "frozen", "parameter": True}
    assert structure["derived"] == {"$tensor": "derived"}
    assert all(t.is_contiguous() and not t.requires_grad for t in tensors.values())
    assert all(type(t) is torch.Tensor for t in tensors.values())
    back = decode_tree(structure, load(save(tensors)))
    assert back["w"].requires_grad and back["w"].is_leaf
    assert isinstance(back["p"], torch.nn.Parameter) and back["p"].requires_grad
    assert isinstance(back["frozen"], torch.nn.Parameter) and not back["frozen"].requires_grad
    assert not back["derived"].requires_grad
    assert torch.equal(back["t"], w.detach().t())


def test_tensor_keys_are_unique_and_path_like() -> None:
    t1, t2, t3 = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    structure, tensors = encode_tree({"a/b": t1, "a": {"b": t2}, "state": {0: {"m": t3}}})
    assert len(tensors) == 3
    assert "state/0/m" in tensors
    back = decode_tree(structure, tensors)
    assert torch.equal(back["a/b"], t1) and torch.equal(back["a"]["b"], t2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, 2, (x for x in [])]}, "value['a'][2] is a generator"),
        ([object()], "value[0] is an object"),
        ({1: {"k": {1, 2}}}, "value[1]['k'] is a set"),
        ({object(): 1}, "value has a key that is an object"),
        ({"sparse": torch.eye(2).to_sparse()}, "value['sparse'] is a torch.sparse_coo tensor"),
        (torch.zeros(2, dtype=torch.complex128), "safetensors cannot store"),
        (np.array(["a"], dtype=object), "numpy array of dtype object"),
        (torch.empty(2, device="meta"), "meta device"),
    ],
)
def test_not_a_tree_names_the_path(value: Any, message: str) -> None:
    with pytest.raises(NotATreeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        encode_tree(value)
    assert not is_tree(value)
    assert issubclass(NotATreeError, TypeError)


def test_cycles_depth_and_subclasses_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(NotATreeError, match="contains itself"):
        encode_tree(loop)
    deep: Any = 0
    for _ in range(150):
        deep = [deep]
    with pytest.raises(NotATreeError, match="deeper than 100"):
        encode_tree(deep)
    from collections import defaultdict, namedtuple

    Pair = namedtuple("Pair", "a b")
    assert not is_tree(Pair(1, 2))
    assert not is_tree(defaultdict(list))
    assert is_tree({"ok": [1, (2, 3)], "t": torch.zeros(1)})


def test_is_tree_does_not_copy_tensors() -> None:
    big = torch.zeros(10)
    assert is_tree({"big": big})


@pytest.mark.parametrize(
    "structure",
    [
        {"$pickle": "x"},
        {"$tensor": "k", "extra": 1},
        {"$tuple": [1], "$items": []},
        {"$tuple": "not a list"},
        {"$items": [[1]]},
        {"$items": [[[1, 2], "list keys are unhashable"]]},
        {"$items": [[1, "a"], [1, "b"]]},
        {"$tensor": "missing"},
        {"$tensor": 5},
        {"$tensor": "t", "requires_grad": "yes"},
        {"$dtype": "load"},
        {"$dtype": "Tensor"},
        {"$device": "cuda; rm -rf"},
        {"$device": "nosuchdevice"},
        {"plain": {"$mixed": 1, "other": 2}},
        {1: "non-str key"},
        {"x": b"bytes"},
        {"x": (1, 2)},
    ],
)
def test_decode_rejects_anything_unknown(structure: Any) -> None:
    with pytest.raises(ValueError):
        decode_tree(structure, {"t": torch.zeros(1, dtype=torch.int64)})


def test_decode_limits_depth() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        decode_tree(deep, {})
