"""Pre-flight: a value that cannot travel is named, with its type and what to do."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gensyn_jupyter.capture import PreflightError, build_bundle

from .conftest import QUICKSTART


@pytest.fixture
def open_file(tmp_path: Path) -> Iterator[Any]:
    path = tmp_path / "data.txt"
    path.write_text("1,2,3\n")
    with path.open() as handle:
        yield handle


def _fail(source: str, ns: dict[str, Any], **kwargs: Any) -> PreflightError:
    with pytest.raises(PreflightError) as info:
        build_bundle(source, ns, **kwargs)
    return info.value


def test_open_file(ns: dict[str, Any], open_file: Any) -> None:
    ns["f"] = open_file
    error = _fail("rows = f.read().split(',')\nacc = accuracy(model, X, y)\n", ns)
    assert error.variable == "f"
    assert error.type_name == "_io.TextIOWrapper"
    assert str(error) == (
        "cannot send `f` (_io.TextIOWrapper) to a provider: cannot pickle "
        "'_io.TextIOWrapper' object. What to do: open the file inside the cell, or pass its "
        "contents (bytes, a tensor) instead."
    )
    assert isinstance(error, ValueError)


def test_generator(ns: dict[str, Any]) -> None:
    ns["batches"] = (ns["X"][i : i + 8] for i in range(0, 64, 8))
    error = _fail("for xb in batches:\n    model(xb)\n", ns)
    assert error.variable == "batches" and error.type_name == "generator"
    assert "cannot send `batches` (generator)" in str(error)
    assert "build the generator or iterator inside the cell" in error.hint


def test_lock(ns: dict[str, Any]) -> None:
    ns["lock"] = threading.Lock()
    error = _fail("with lock:\n    model(X)\n", ns)
    assert error.variable == "lock" and error.type_name == "_thread.lock"
    assert "cannot send `lock` (_thread.lock)" in str(error)
    assert "inside the cell" in error.hint


def test_socket(ns: dict[str, Any]) -> None:
    with socket.socket() as sock:
        ns["sock"] = sock
        error = _fail("sock.sendall(b'x')\n", ns)
    assert error.variable == "sock" and error.type_name == "socket.socket"
    assert "cannot send `sock` (socket.socket)" in str(error)
    assert "connection inside the cell" in error.hint


def test_lambda_closing_over_a_file(ns: dict[str, Any], open_file: Any) -> None:
    ns["fh"] = open_file
    exec("read_rows = lambda: fh.readlines()\n", ns)  # a global of the lambda
    error = _fail("rows = read_rows()\n", ns)
    assert error.variable == "read_rows" and error.type_name == "function"
    assert "cannot send `read_rows` (function)" in str(error)
    assert "found at `fh`, _io.TextIOWrapper" in str(error)
    assert "open the file inside the cell" in str(error)

    def make(handle: Any) -> Any:
        return lambda: handle.read()

    ns["reader"] = make(open_file)  # a true closure
    error = _fail("text = reader()\n", ns)
    assert error.variable == "reader" and "open the file inside the cell" in error.hint


def test_object_holding_a_file(ns: dict[str, Any], open_file: Any) -> None:
    exec("class Logger:\n    def __init__(self, f):\n        self.f = f\n        self.n = 0\n", ns)
    ns["log"] = ns["Logger"](open_file)
    error = _fail(QUICKSTART + "log.n += 1\n", ns)
    assert error.variable == "log" and error.type_name == "__main__.Logger"
    assert "found at `log.f`" in str(error)
    assert "open the file inside the cell" in error.hint


def test_module_attribute_holding_a_lock(ns: dict[str, Any]) -> None:
    model = ns["model"]
    model.guard = threading.RLock()
    error = _fail(QUICKSTART, ns)
    assert error.variable == "model" and error.type_name == "__main__.Net"
    assert "found at `model.guard`" in str(error)
    assert "lock" in error.hint


def test_unknown_unpicklable_gets_the_generic_hint(ns: dict[str, Any]) -> None:
    class Stubborn:
        def __reduce__(self) -> Any:
            raise TypeError("Stubborn objects refuse to travel")

    ns["s"] = Stubborn()
    error = _fail("print(s)\n", ns)
    assert error.variable == "s"
    assert "Stubborn objects refuse to travel" in str(error)
    assert "create it inside the cell" in error.hint


def test_total_size_over_the_limit_names_the_largest_inputs(ns: dict[str, Any]) -> None:
    ns["big"] = torch.zeros(64, 1024)  # 256 KiB
    error = _fail("z = big.sum() + X.sum()\n", ns, max_bytes=100_000)
    assert error.variable == "big" and error.type_name == "torch.Tensor"
    assert "`big` (torch.Tensor) 256.0 KiB" in str(error)
    assert "over the limit of 97.7 KiB" in str(error)
    assert "What to do:" in str(error)


def test_objects_count_towards_the_size_limit(ns: dict[str, Any]) -> None:
    ns["wide"] = torch.nn.Linear(256, 256)  # about 257 KiB of parameters, pickled
    error = _fail("out = wide(torch.zeros(1, 256)) + X.sum()\n", ns, max_bytes=200_000)
    assert error.variable == "wide"
    assert "`wide` (torch.nn.modules.linear.Linear)" in str(error)


def test_within_the_limit_passes(ns: dict[str, Any]) -> None:
    prepared = build_bundle(QUICKSTART, ns, max_bytes=1_000_000)
    assert prepared.nbytes < 1_000_000
