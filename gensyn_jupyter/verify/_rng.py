"""Every random number generator a training loop may draw from, as a state tree and back.

Global generators: torch's CPU generator, each CUDA device's (when the run is
on CUDA), Python's ``random`` and NumPy's legacy global ``RandomState``.
Generators the cell holds by name are also included: ``torch.Generator``,
``numpy.random.Generator``/``RandomState`` and ``random.Random`` objects, and
the ``generator`` of a DataLoader or of its sampler.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

__all__ = ["find_generators", "rng_state", "set_rng_state"]


_GENERATOR_PATHS = (
    "generator",
    "sampler.generator",
    "batch_sampler.sampler.generator",
    "sampler.sampler.generator",
)


def _loader_generators(name: str, value: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for path in _GENERATOR_PATHS:
        obj = value
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            out.append((f"{name}.{path}", obj))
    return out


def _is_generator(value: Any) -> bool:
    import numpy as np
    import torch

    return isinstance(
        value, torch.Generator | np.random.Generator | np.random.RandomState | random.Random
    )


def find_generators(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Generators the cell holds: by name, and inside DataLoaders and samplers (sorted names)."""
    import torch

    found: dict[str, Any] = {}
    seen: set[int] = {id(random._inst)}  # the global one is covered as "python"
    for name in sorted(namespace):
        if name.startswith("__"):
            continue
        value = namespace[name]
        candidates: list[tuple[str, Any]] = []
        if _is_generator(value):
            candidates.append((name, value))
        elif isinstance(value, torch.utils.data.DataLoader | torch.utils.data.Sampler):
            candidates.extend(_loader_generators(name, value))
        for label, gen in candidates:
            if _is_generator(gen) and id(gen) not in seen:
                seen.add(id(gen))
                found[label] = gen
    return found


def _generator_state(gen: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(gen, torch.Generator):
        return {"torch": gen.get_state()}
    if isinstance(gen, np.random.Generator):
        return {"numpy_generator": _plain(gen.bit_generator.state)}
    if isinstance(gen, np.random.RandomState):
        return {"numpy_random_state": _numpy_legacy(gen.get_state(legacy=True))}  # type: ignore[arg-type]
    version, internal, gauss = gen.getstate()
    return {"python": _python_state(version, internal, gauss)}


def _set_generator_state(gen: Any, state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    if isinstance(gen, torch.Generator):
        gen.set_state(state["torch"])
    elif isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["numpy_generator"]
    elif isinstance(gen, np.random.RandomState):
        gen.set_state(_numpy_legacy_back(state["numpy_random_state"]))
    else:
        gen.setstate(_python_state_back(state["python"]))


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays inside a bit generator's state -> Python values and tensors."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.astype(np.int64) if value.dtype.kind == "u" else value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _python_state(version: int, internal: tuple[int, ...], gauss: float | None) -> Any:
    import torch

    return {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_back(state: Mapping[str, Any]) -> tuple[Any, ...]:
    internal = tuple(int(x) for x in state["state"].tolist())
    return (int(state["version"]), internal, state["gauss"])


def _numpy_legacy(state: tuple[Any, ...]) -> Any:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = state
    return {
        "kind": str(kind),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _numpy_legacy_back(state: Mapping[str, Any]) -> tuple[Any, ...]:
    import numpy as np

    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    return (state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"])


def rng_state(generators: Mapping[str, Any], *, cuda: bool) -> dict[str, Any]:
    """The state of every generator as a tree (tensors and plain values)."""
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _python_state(*random.getstate()),
        "numpy": _numpy_legacy(np.random.get_state(legacy=True)),  # type: ignore[arg-type]
    }
    if cuda:
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if generators:
        state["generators"] = {name: _generator_state(g) for name, g in generators.items()}
    return state


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, Any]) -> None:
    """Put every generator back to ``state`` (as :func:`rng_state` took it)."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"].to("cpu", dtype=torch.uint8))
    random.setstate(_python_state_back(state["python"]))
    np.random.set_state(_numpy_legacy_back(state["numpy"]))
    if "cuda" in state:
        torch.cuda.set_rng_state_all([t.to("cpu", dtype=torch.uint8) for t in state["cuda"]])
    saved = state.get("generators", {})
    missing = sorted(set(saved) - set(generators))
    if missing:
        raise LookupError(f"generators {missing} of the checkpoint are not in the namespace")
    for name, gen in generators.items():
        if name in saved:
            _set_generator_state(gen, saved[name])
