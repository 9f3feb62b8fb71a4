"""build_bundle and load_inputs: a notebook namespace there and back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gensyn_jupyter.capture import build_bundle, load_inputs
from gensyn_jupyter.protocol import Bundle, sha256_hex

from .conftest import QUICKSTART


def _by_name(bundle: Bundle) -> dict[str, Any]:
    return {ref.name: ref for ref in bundle.inputs}


def test_quickstart_captures_what_the_cell_reads(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns)
    bundle = prepared.bundle
    refs = _by_name(bundle)
    assert set(refs) == {"F", "X", "y", "model", "opt"}
    assert refs["F"].kind == "module" and refs["F"].module == "torch.nn.functional"
    assert refs["F"].blob is None
    assert refs["X"].kind == "tree" and refs["X"].type_name == "torch.Tensor"
    assert refs["model"].kind == "object" and refs["model"].type_name == "__main__.Net"
    assert refs["opt"].kind == "object" and refs["opt"].type_name == "torch.optim.sgd.SGD"
    assert refs["model"].blob == refs["opt"].blob  # one pickle: shared references survive
    assert bundle.outputs == ["epoch", "i", "loss", "losses"]
    assert bundle.returns == ["X", "model", "opt", "y"]
    assert bundle.cell_line_offset == 1
    assert bundle.kernel_device == "cpu"
    assert bundle.source == QUICKSTART


def test_blobs_are_content_addressed_and_complete(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns)
    assert set(prepared.blobs) == prepared.bundle.blobs()
    for sha, data in prepared.blobs.items():
        assert sha256_hex(data) == sha
    for ref in prepared.bundle.inputs:
        if ref.blob is not None:
            assert ref.nbytes == len(prepared.blobs[ref.blob])
    raw = prepared.bundle_json()
    assert (
        raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    )  # canonical
    assert Bundle.model_validate_json(raw) == prepared.bundle
    assert prepared.nbytes == sum(map(len, prepared.blobs.values())) + len(raw)


def test_unchanged_data_hashes_the_same_next_time(ns: dict[str, Any]) -> None:
    first = _by_name(build_bundle(QUICKSTART, ns).bundle)
    with torch.no_grad():
        ns["model"].fc1.weight.add_(1.0)  # the model changed, the data did not
    second = _by_name(build_bundle(QUICKSTART, ns).bundle)
    assert first["X"].blob == second["X"].blob
    assert first["y"].blob == second["y"].blob
    assert first["model"].blob != second["model"].blob
    ns["X"] = ns["X"].clone()  # a new object with the same data: same blob
    assert _by_name(build_bundle(QUICKSTART, ns).bundle)["X"].blob == first["X"].blob


def test_load_inputs_keeps_the_optimizer_on_the_models_parameters(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns)
    reads: list[str] = []

    def read_blob(sha: str) -> bytes:
        reads.append(sha)
        return prepared.blobs[sha]

    inputs = load_inputs(prepared.bundle, read_blob)
    assert sorted(reads) == sorted(prepared.blobs)  # each blob read once
    model, opt = inputs["model"], inputs["opt"]
    assert model is not ns["model"]
    params = list(model.parameters())
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], params, strict=True))
    assert type(model).__name__ == "Net"
    assert torch.equal(inputs["X"], ns["X"]) and torch.equal(inputs["y"], ns["y"])
    assert inputs["F"] is torch.nn.functional

    before = [p.detach().clone() for p in params]
    run = {"__name__": "__main__", **inputs}
    exec(QUICKSTART, run)
    assert len(run["losses"]) == 20 and run["losses"][-1] < run["losses"][0]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # the kernel's own objects are untouched
    assert torch.equal(ns["model"].fc1.weight, before[0])


def test_plain_data_functions_and_ipython_plumbing(ns: dict[str, Any]) -> None:
    ns["len"] = len  # the builtin itself: never captured
    ns["cfg"] = {"lr": 0.1, "betas": (0.9, 0.99), "name": "run"}
    source = (
        "acc = accuracy(model, X, y)\n"
        "print(In, Out, _, _i1, _1, len(sizes), cfg['lr'], get_ipython, __name__)\n"
    )
    prepared = build_bundle(source + "for _ in range(2):\n    __x__ = 1\n", ns, cell_line_offset=2)
    assert prepared.bundle.outputs == ["acc"]  # not IPython's ``_`` nor dunder names
    refs = _by_name(prepared.bundle)
    assert set(refs) == {"accuracy", "model", "X", "y", "sizes", "cfg"}
    assert refs["sizes"].kind == "tree" and refs["sizes"].blob is None
    assert refs["sizes"].structure == [64, 32, 16] and refs["sizes"].nbytes == 0
    assert refs["cfg"].structure == {"lr": 0.1, "betas": {"$tuple": [0.9, 0.99]}, "name": "run"}
    assert refs["accuracy"].kind == "object"
    assert prepared.bundle.cell_line_offset == 2
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    assert inputs["cfg"] == ns["cfg"]
    assert inputs["accuracy"](inputs["model"], inputs["X"], inputs["y"]) == pytest.approx(
        ns["accuracy"](ns["model"], ns["X"], ns["y"])
    )


def test_exclude_leaves_names_out(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns, exclude={"opt", "y"})
    assert set(_by_name(prepared.bundle)) == {"F", "X", "model"}


def test_a_tree_holding_the_models_parameters_travels_with_the_model(ns: dict[str, Any]) -> None:
    exec("params = list(model.parameters())\nfirst = params[0]\n", ns)
    prepared = build_bundle("opt2 = torch.optim.Adam(params)\nprint(model, first)\n", ns)
    refs = _by_name(prepared.bundle)
    assert refs["params"].kind == "object" and refs["first"].kind == "object"
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    model_params = list(inputs["model"].parameters())
    assert all(a is b for a, b in zip(inputs["params"], model_params, strict=True))
    assert inputs["first"] is model_params[0]


def test_trees_sharing_tensors_share_a_blob_and_stay_shared() -> None:
    w = torch.randn(3, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    ns = {"w": w, "b": b, "params": [w, b], "xs": torch.randn(5, 3), "other": torch.ones(2)}
    cell = (
        "loss = ((xs @ w + b) ** 2).mean()\nloss.backward()\n"
        "with torch.no_grad():\n    for p in params:\n        p -= 0.1 * p.grad\n"
        "print(other)\n"
    )
    prepared = build_bundle(cell, ns)
    refs = _by_name(prepared.bundle)
    assert refs["w"].blob == refs["b"].blob == refs["params"].blob
    assert refs["xs"].blob not in (refs["w"].blob, refs["other"].blob)
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    assert inputs["params"][0] is inputs["w"] and inputs["params"][1] is inputs["b"]
    assert inputs["w"].requires_grad and inputs["w"].is_leaf
    run = {"torch": torch, **inputs}
    exec(cell, run)
    assert not torch.equal(run["w"], w)


def test_a_notebook_function_keeps_seeing_the_captured_objects(ns: dict[str, Any]) -> None:
    exec("def batch(i):\n    return X[i:i+4]\n", ns)
    prepared = build_bundle("b = batch(0)\nX.mul_(2)\n", ns)
    assert _by_name(prepared.bundle)["X"].kind == "object"  # the function refers to X too
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    assert inputs["batch"].__globals__["X"] is inputs["X"]


def test_numpy_inputs_and_environment(ns: dict[str, Any]) -> None:
    ns["arr"] = np.arange(6.0).reshape(2, 3)
    ns["np"] = np
    prepared = build_bundle("z = np.sum(arr) + model(X).sum().item()\n", ns)
    env = prepared.bundle.environment
    assert env.python == sys.version.split()[0]
    assert env.torch == torch.__version__
    assert env.platform
    assert "torch" in env.packages and "numpy" in env.packages
    assert "cloudpickle" in env.packages
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    assert isinstance(inputs["arr"], np.ndarray) and np.array_equal(inputs["arr"], ns["arr"])
    assert inputs["np"] is np


def test_load_inputs_refuses_a_blob_that_does_not_match_its_name(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns)
    with pytest.raises(ValueError, match="does not match"):
        load_inputs(prepared.bundle, lambda sha: prepared.blobs[sha] + b"x")


def test_syntax_error_propagates(ns: dict[str, Any]) -> None:
    with pytest.raises(SyntaxError):
        build_bundle("for x in\n", ns)


_LOCAL_MODULE = """\
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x):
        return helper(self.lin(x))

def helper(x):
    return x * 2
"""

_PROVIDER = """\
import json, sys
from pathlib import Path
from gensyn_jupyter.capture import load_inputs
from gensyn_jupyter.protocol import Bundle
root = Path(sys.argv[1])
bundle = Bundle.model_validate_json((root / "bundle.json").read_bytes())
inputs = load_inputs(bundle, lambda sha: (root / sha).read_bytes())
ns = {"__name__": "__main__", **inputs}
exec(bundle.source, ns)
print(json.dumps({"out": ns["out"], "acc": ns["acc"], "cls": type(ns["tiny"]).__name__}))
"""


def test_a_fresh_provider_process_runs_notebook_and_local_code(
    ns: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code from ``__main__`` and from a local module next to the notebook goes by value."""
    here = tmp_path / "notebook_dir"
    here.mkdir()
    (here / "mylocalmodels.py").write_text(_LOCAL_MODULE)
    monkeypatch.syspath_prepend(str(here))
    import mylocalmodels  # type: ignore[import-not-found]

    try:
        ns["tiny"] = mylocalmodels.Tiny()
        ns["mylocalmodels"] = mylocalmodels
        cell = (
            "out = tiny(torch.ones(1, 2)).shape[-1] + mylocalmodels.helper(1)\n"
            "acc = accuracy(model, X, y)\n"
        )
        prepared = build_bundle(cell, ns)
        refs = _by_name(prepared.bundle)
        assert refs["mylocalmodels"].kind == "object"  # not installed anywhere: by value
        assert "mylocalmodels" not in prepared.bundle.environment.packages
        blobs = tmp_path / "blobs"
        blobs.mkdir()
        (blobs / "bundle.json").write_bytes(prepared.bundle_json())
        for sha, data in prepared.blobs.items():
            (blobs / sha).write_bytes(data)
    finally:
        sys.modules.pop("mylocalmodels", None)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROVIDER), str(blobs)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["out"] == 4 and result["cls"] == "Tiny"
    assert result["acc"] == pytest.approx(ns["accuracy"](ns["model"], ns["X"], ns["y"]))


def test_names_the_cell_binds_before_reading_are_not_captured(ns: dict[str, Any]) -> None:
    """A cell that once ran locally left stale values behind: they must not travel."""
    ns["it"] = (i for i in range(3))  # unpicklable, but the cell makes its own
    ns["losses"] = [9.0]
    ns["loss"] = torch.tensor(1.0, requires_grad=True) * 2
    ns["i"] = 7
    prepared = build_bundle("it = iter(sizes)\nfirst = next(it)\n" + QUICKSTART, ns)
    assert set(_by_name(prepared.bundle)) == {"F", "X", "y", "model", "opt", "sizes"}
    assert {"it", "first", "losses", "loss", "i"} <= set(prepared.bundle.outputs)
    ns["total"] = 1.0  # read before it is bound: captured
    refs = _by_name(build_bundle("total = total + 1\n", ns).bundle)
    assert set(refs) == {"total"}


def test_accelerator_tensors_are_pickled_as_cpu_tensors() -> None:
    """No GPU here: check the reduction a CUDA tensor gets, on a CPU tensor."""
    import pickle

    from gensyn_jupyter.capture._bundle import _kernel_device
    from gensyn_jupyter.capture._pickling import _reduce_on_cpu

    leaf = torch.randn(3, requires_grad=True)
    param = torch.nn.Parameter(torch.randn(2))
    for original in (leaf, param, torch.arange(3)):
        rebuild, args = _reduce_on_cpu(original, torch)
        assert pickle.loads(pickle.dumps(rebuild)) is rebuild  # importable on a provider
        copy = rebuild(*args)
        assert type(copy) is type(original) and torch.equal(copy, original)
        assert copy.requires_grad == original.requires_grad
    assert _kernel_device({"cpu", "cuda"}) == "cuda"
    assert _kernel_device({"cpu", "mps"}) == "mps"
    assert _kernel_device({"cpu", "meta"}) == "cpu"
    assert _kernel_device(set()) == "cpu"


def test_importing_capture_does_not_import_torch() -> None:
    code = (
        "import sys, gensyn_jupyter.capture; print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["False", "False"]


def test_a_loaded_scheduler_does_not_warn_that_the_step_was_overridden() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    source = "model(torch.ones(2)).sum().backward()\nopt.step()\nsched.step()\n"
    prepared = build_bundle(source, {"torch": torch, "model": model, "opt": opt, "sched": sched})
    inputs = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the provider would print the warning in the cell
        exec(source, {"__name__": "__main__", **inputs})
    assert inputs["sched"].optimizer is inputs["opt"]
    assert inputs["opt"].param_groups[0]["lr"] == 0.05
