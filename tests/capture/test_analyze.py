"""analyze_cell: which names a cell reads and which it binds."""

from __future__ import annotations

import pytest

from gensyn_jupyter.capture import CellAnalysis, analyze_cell

from .conftest import QUICKSTART


def test_quickstart_loop_reads_its_inputs_and_binds_its_outputs() -> None:
    a = analyze_cell(QUICKSTART)
    assert {"X", "y", "model", "opt", "F", "len", "range"} <= a.loads
    assert a.stores == {"losses", "epoch", "i", "loss"}
    assert dict(a.imports) == {}


def test_nested_function_reads_count_but_its_locals_are_not_stores() -> None:
    a = analyze_cell(
        "def step(batch, lr=default_lr):\n"
        "    inner = model(batch) * scale\n"
        "    return inner\n"
        "out = step(data)\n"
    )
    assert {"model", "scale", "default_lr", "data", "step"} <= a.loads
    assert a.stores == {"step", "out"}
    assert "inner" not in a.stores


def test_global_declared_in_a_nested_function_is_a_store() -> None:
    a = analyze_cell("def bump():\n    global counter\n    counter += 1\n    local = 2\nbump()\n")
    assert a.stores == {"bump", "counter"}
    assert "counter" in a.loads


def test_comprehension_variables_stay_inside_but_walrus_escapes() -> None:
    a = analyze_cell(
        "squares = [v * v for v in values if v > threshold]\n"
        "pairs = {k: w for k, w in table.items()}\n"
        "flags = [(last := v) for v in values]\n"
        "gen = (t for t in range(3))\n"
    )
    assert {"values", "threshold", "table"} <= a.loads
    assert a.stores == {"squares", "pairs", "flags", "last", "gen"}


def test_imports_map_bound_names_to_modules() -> None:
    a = analyze_cell(
        "import numpy as np\n"
        "import os.path\n"
        "import torch.nn.functional as F\n"
        "from torch import nn, cross_entropy\n"
        "from math import pi\n"
        "from . import sibling\n"
        "from json import *\n"
    )
    assert dict(a.imports) == {
        "np": "numpy",
        "os": "os",
        "F": "torch.nn.functional",
        "nn": "torch.nn",
        "cross_entropy": "torch",
        "pi": "math",
        "sibling": ".",
    }
    assert a.stores == set(a.imports)


def test_augassign_reads_and_binds() -> None:
    a = analyze_cell("total += loss\nmodel.steps += 1\nbuf[0] -= 1\n")
    assert {"total", "loss", "model", "buf"} <= a.loads
    assert a.stores == {"total"}


def test_tuple_unpacking_starred_and_annotated_targets() -> None:
    a = analyze_cell(
        "a, (b, *rest) = pair\n"
        "[c, d] = more\n"
        "typed: int = 3\n"
        "declared_only: int\n"
        "obj.attr = 1\n"
        "seq[0] = 2\n"
    )
    assert a.stores == {"a", "b", "rest", "c", "d", "typed"}
    assert {"pair", "more", "obj", "seq", "int"} <= a.loads
    assert "declared_only" not in a.loads


def test_walrus_with_for_except_del_and_match() -> None:
    a = analyze_cell(
        "if (n := len(items)) > 3:\n    pass\n"
        "with open(path) as fh, lock:\n    pass\n"
        "async def go():\n    async for q in src:\n        pass\n"
        "for k, v in d.items():\n    pass\n"
        "try:\n    pass\nexcept ValueError as err:\n    pass\n"
        "del stale\n"
        "match command:\n"
        "    case [first, *others]:\n        pass\n"
        "    case {'k': kv, **extra}:\n        pass\n"
        "    case Point(x=px) as pt:\n        pass\n"
    )
    assert a.stores == {
        "n", "fh", "go", "k", "v", "err", "first", "others", "kv", "extra", "px", "pt",
    }  # fmt: skip
    assert {"items", "path", "lock", "d", "stale", "command", "Point", "src"} <= a.loads
    assert "q" not in a.stores


def test_class_definition_binds_its_name_only() -> None:
    a = analyze_cell(
        "@register\n"
        "class Net(Base, metaclass=Meta):\n"
        "    width = hidden\n"
        "    def forward(self, x):\n"
        "        return self.layer(x) + bias\n"
    )
    assert a.stores == {"Net"}
    assert {"register", "Base", "Meta", "hidden", "bias", "self", "x"} <= a.loads


def test_lambda_and_attribute_chains() -> None:
    a = analyze_cell("f = lambda z, k=kdef: z + offset\nval = np.random.randn(3).sum()\n")
    assert a.stores == {"f", "val"}
    assert {"offset", "kdef", "np"} <= a.loads
    assert "random" not in a.loads


def test_top_level_await_parses() -> None:
    assert analyze_cell("result = await fetch()\n").stores == {"result"}


def test_syntax_error_keeps_the_cells_line_number() -> None:
    with pytest.raises(SyntaxError) as info:
        analyze_cell("x = 1\ny = 2\nz = (\n")
    assert info.value.lineno == 3


def test_analysis_is_frozen_and_hashable() -> None:
    a = analyze_cell("import numpy as np\n")
    assert isinstance(a, CellAnalysis)
    hash(a)
    with pytest.raises(TypeError):
        a.imports["x"] = "y"  # type: ignore[index]


def test_free_reads_leave_out_what_the_cell_binds_first() -> None:
    from gensyn_jupyter.capture._flow import free_reads

    from .conftest import QUICKSTART

    assert free_reads(QUICKSTART) == {"F", "X", "y", "model", "opt", "len", "range"}
    source = (
        "it = iter(loader)\n"
        "x = next(it)\n"
        "w = w + 1\n"
        "del x\n"
        "print(x)\n"
        "if c:\n    a = 1\nelse:\n    a = 2\n"
        "print(a)\n"
        "if d:\n    b = 1\n"
        "print(b)\n"
        "with open(p) as fh:\n    data = fh.read()\n"
        "print(data, fh)\n"
        "def f():\n    return model, later\n"
        "later = 1\n"
        "try:\n    t = 1\nexcept E as e:\n    print(e, t)\n"
        "while cond:\n    inner = 1\n    print(inner)\n"
        "match cmd:\n    case [h]:\n        print(h, g)\n"
    )
    assert free_reads(source) == {
        "iter", "loader", "next", "w", "x", "print", "c", "d", "b", "open", "p",
        "model", "later", "E", "t", "cond", "cmd", "g",
    }  # fmt: skip
