"""Load what the provider sent back into the kernel's namespace, in place.

An existing ``nn.Module``, optimizer or LR scheduler keeps its identity and
takes the new state through ``load_state_dict``; an existing tensor of the
same shape and dtype is overwritten in place; tensors, numbers, strings,
lists and dicts of those are assigned. Nothing here unpickles anything: the
values were decoded from safetensors + JSON by the capture codec.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ..protocol import OutputInfo

__all__ = ["apply_results"]

_STATEFUL = {
    "module_state": "torch.nn.Module",
    "optimizer_state": "torch.optim.Optimizer",
    "scheduler_state": "an LR scheduler",
}


def _is_target(kind: str, target: Any) -> bool:
    import torch

    if kind == "module_state":
        return isinstance(target, torch.nn.Module)
    if kind == "optimizer_state":
        return isinstance(target, torch.optim.Optimizer)
    return callable(getattr(target, "load_state_dict", None)) and callable(
        getattr(target, "state_dict", None)
    )


def _check_module_state(module: Any, state: Any) -> None:
    """Refuse a state dict that does not fit ``module`` before any of it is copied.

    ``load_state_dict`` copies the entries that fit before it raises for those
    that do not, which would leave a module half overwritten by a bad result.
    """
    import torch

    own = module.state_dict()
    if not isinstance(state, Mapping):
        raise RuntimeError(f"the state is a {type(state).__name__}, not a state dict")
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(str(k) for k in state if k not in own)
    shapes = [
        f"{k}: {_shape(state[k])} for {tuple(v.shape)}"
        for k, v in own.items()
        if k in state
        and isinstance(v, torch.Tensor)
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)
        and not _is_uninitialized(v)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append("wrong shapes (sent for expected) " + "; ".join(shapes))
    if problems:
        raise RuntimeError(", ".join(problems))


def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else f"a {type(value).__name__}"


def _is_uninitialized(tensor: Any) -> bool:
    from torch.nn.parameter import is_lazy

    return bool(is_lazy(tensor))


def apply_results(
    namespace: MutableMapping[str, Any],
    values: Mapping[str, Any],
    outputs: list[OutputInfo],
    *,
    handle_name: str,
) -> list[str]:
    """Update ``namespace`` from decoded results; return one note per name.

    Raises
    ------
    RuntimeError
        When a state dict does not fit the kernel's object (e.g. the cell
        replaced a layer remotely): names the variable and leaves it unchanged.
    """
    import torch

    notes: list[str] = []
    for info in outputs:
        name = info.name
        if info.kind == "refused":
            notes.append(f"{name}: not loaded ({info.note})")
            continue
        if name not in values:
            continue
        value = values[name]
        target = namespace.get(name)
        if info.kind in _STATEFUL:
            if not _is_target(info.kind, target):
                notes.append(
                    f"{name}: {info.type_name} created on the provider; its state_dict is in "
                    f"{handle_name}.outputs[{name!r}] (build the object here and load it)"
                )
                continue
            assert target is not None
            try:
                if info.kind == "module_state":
                    _check_module_state(target, value)
                target.load_state_dict(value)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise RuntimeError(
                    f"could not load the trained state into `{name}`: {exc}. "
                    f"It is unchanged; the state is in {handle_name}.outputs[{name!r}]"
                ) from exc
            notes.append(f"{name}: state loaded in place")
        elif (
            isinstance(target, torch.Tensor)
            and isinstance(value, torch.Tensor)
            and target.shape == value.shape
            and target.dtype == value.dtype
        ):
            with torch.no_grad():
                target.copy_(value)
            notes.append(f"{name}: tensor updated in place")
        else:
            namespace[name] = value
    return notes
