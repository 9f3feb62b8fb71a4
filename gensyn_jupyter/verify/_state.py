"""The training state of a run: found in the cell's namespace, hashed canonically, restored.

What the state holds (its *parts*, each hashed on its own):

``module:NAME`` / ``grad:NAME``
    every ``nn.Module`` the namespace names (``model``, ``models[0]``,
    ``nets['g']``; a module inside another found one is not repeated): its
    ``state_dict()``, and apart the ``.grad`` of each parameter (None kept).
``optimizer:NAME``
    ``state_dict()``; parameters that belong to no found module (a bare
    tensor trained directly) with their values and grads; for the others the
    module parameter they are (``model.fc.weight``). An optimizer that stepped
    but that the namespace does not name is ``optimizer:<anonymous N>``.
``scheduler:NAME`` / ``scaler:NAME``
    LR schedulers (``ReduceLROnPlateau`` too) and AMP ``GradScaler``\\ s.
``rng``
    see :mod:`._rng`.
``position``
    the loop position (see :mod:`._loops`) and which optimizer counts steps.

The leaf is ``keccak256("gensyn/leaf/v1" ‖ 0x00 ‖ canonical({"step", "parts"}))``
where each part is ``sha256("gensyn/part/v1/" + name ‖ 0x00 ‖ canonical(value))``
(see :mod:`._canonical`). Names are sorted, objects found twice count once
(first name in sorted order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._canonical import canonical_bytes, digest
from ._merkle import keccak256

__all__ = [
    "Found",
    "StateDigest",
    "find_objects",
    "part_digest",
    "restore_state",
    "state_digest",
    "state_tree",
]

_LEAF_DOMAIN = b"gensyn/leaf/v1\x00"


@dataclass
class Found:
    """The stateful objects of a run, by name."""

    modules: dict[str, Any] = field(default_factory=dict)
    optimizers: dict[str, Any] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    scalers: dict[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        """True when an optimizer is known only from its steps (a replay cannot restore it)."""
        return any(name.startswith("<") for name in self.optimizers)


@dataclass(frozen=True)
class StateDigest:
    """The hash of one state: its leaf and the digest of each part."""

    step: int
    parts: dict[str, bytes]
    leaf: bytes

    def parts_hex(self) -> dict[str, str]:
        return {name: "0x" + value.hex() for name, value in self.parts.items()}


def _kind(value: Any) -> str | None:
    import torch

    if isinstance(value, torch.nn.Module):
        return "modules"
    if isinstance(value, torch.optim.Optimizer):
        return "optimizers"
    if isinstance(
        value, torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    ):
        return "schedulers"
    if isinstance(value, torch.amp.GradScaler):
        return "scalers"
    return None


_MAX_CONTAINER = 64
"""Lists, tuples and dicts longer than this are not searched (a list of losses)."""


def _candidates(name: str, value: Any) -> list[tuple[str, Any]]:
    """The value itself, or the items of a short list, tuple or str-keyed dict (one level)."""
    if isinstance(value, list | tuple | dict) and len(value) > _MAX_CONTAINER:
        return []
    if isinstance(value, list | tuple):
        return [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return [(f"{name}[{k!r}]", value[k]) for k in sorted(value)]
    return [(name, value)]


def find_objects(namespace: Mapping[str, Any], *, stepped: Sequence[Any] = ()) -> Found:
    """Every module, optimizer, scheduler and scaler the namespace names; ``stepped`` adds
    optimizers seen stepping that it does not name."""
    found = Found()
    seen: set[int] = set()
    for name in sorted(namespace):
        if name.startswith("__"):
            continue
        value = namespace[name]
        if isinstance(value, type):
            continue
        for label, item in _candidates(name, value):
            kind = _kind(item)
            if kind is not None and id(item) not in seen:
                seen.add(id(item))
                getattr(found, kind)[label] = item
    inner = {
        id(sub)
        for module in found.modules.values()
        for sub in module.modules()
        if sub is not module
    }
    found.modules = {n: m for n, m in found.modules.items() if id(m) not in inner}
    anonymous = [opt for opt in stepped if id(opt) not in seen]
    for index, opt in enumerate(anonymous):
        found.optimizers[f"<anonymous {index}>"] = opt
    return found


def _plain(value: Any, depth: int = 0) -> Any:
    """A state dict as a tree: anything that is not data becomes ``"<type name>"``."""
    import torch

    if depth > 50:
        return "<too deep>"
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v, depth + 1) for k, v in value.items() if _key_ok(k)}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _key_ok(key: Any) -> bool:
    return key is None or isinstance(key, bool | int | float | str)


def _param_names(found: Found) -> dict[int, str]:
    names: dict[int, str] = {}
    for mod_name, module in found.modules.items():
        for p_name, param in module.named_parameters():
            names.setdefault(id(param), f"{mod_name}.{p_name}")
    return names


def _optimizer_params(optimizer: Any) -> list[Any]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def state_tree(found: Found, *, step: int, rng: Any, position: Any) -> dict[str, Any]:
    """The state as a tree of plain values and tensors (live tensors, not copies)."""
    owned = _param_names(found)
    tree: dict[str, Any] = {"step": step, "modules": {}, "grads": {}, "optimizers": {}}
    for name, module in found.modules.items():
        tree["modules"][name] = dict(module.state_dict())
        tree["grads"][name] = {n: p.grad for n, p in module.named_parameters()}
    for name, opt in found.optimizers.items():
        params = _optimizer_params(opt)
        tree["optimizers"][name] = {
            "state_dict": _plain(opt.state_dict()),
            "owned": {str(i): owned[id(p)] for i, p in enumerate(params) if id(p) in owned},
            "params": {str(i): p for i, p in enumerate(params) if id(p) not in owned},
            "grads": {str(i): p.grad for i, p in enumerate(params) if id(p) not in owned},
        }
    tree["schedulers"] = {n: _plain(s.state_dict()) for n, s in found.schedulers.items()}
    tree["scalers"] = {n: _plain(s.state_dict()) for n, s in found.scalers.items()}
    tree["rng"] = rng
    tree["position"] = position
    return tree


def part_digest(name: str, value: Any) -> bytes:
    """sha256 of one part (e.g. ``module:model`` of a state dict the kernel got back)."""
    return digest(value, domain=b"gensyn/part/v1/" + name.encode())


def _digest(tree: Mapping[str, Any]) -> StateDigest:
    parts: dict[str, bytes] = {}
    for section, prefix in (
        ("modules", "module"),
        ("grads", "grad"),
        ("optimizers", "optimizer"),
        ("schedulers", "scheduler"),
        ("scalers", "scaler"),
    ):
        for name, value in tree[section].items():
            parts[f"{prefix}:{name}"] = part_digest(f"{prefix}:{name}", value)
    parts["rng"] = part_digest("rng", tree["rng"])
    parts["position"] = part_digest("position", tree["position"])
    step = int(tree["step"])
    leaf = keccak256(_LEAF_DOMAIN + canonical_bytes({"step": step, "parts": parts}))
    return StateDigest(step=step, parts=parts, leaf=leaf)


def state_digest(tree: Mapping[str, Any]) -> StateDigest:
    """The digest of a state tree (as :func:`state_tree` makes it, or loaded from disk)."""
    return _digest(tree)


def restore_state(found: Found, tree: Mapping[str, Any]) -> None:
    """Load ``tree`` into the objects of ``found`` (in place: the optimizer keeps its params)."""
    import torch

    for section in ("modules", "optimizers", "schedulers", "scalers"):
        have, want = sorted(getattr(found, section)), sorted(tree[section])
        if have != want:
            raise LookupError(f"the checkpoint holds {section} {want}, the run has {have}")
    for name, module in found.modules.items():
        module.load_state_dict(tree["modules"][name], strict=True)
        grads = tree["grads"][name]
        for p_name, param in module.named_parameters():
            _set_grad(param, grads.get(p_name))
    for name, opt in found.optimizers.items():
        saved = tree["optimizers"][name]
        opt.load_state_dict(saved["state_dict"])
        params = _optimizer_params(opt)
        with torch.no_grad():
            for index, value in saved["params"].items():
                params[int(index)].copy_(value)
        for index, grad in saved["grads"].items():
            _set_grad(params[int(index)], grad)
    for name, sched in found.schedulers.items():
        sched.load_state_dict(tree["schedulers"][name])
    for name, scaler in found.scalers.items():
        scaler.load_state_dict(tree["scalers"][name])


def _set_grad(param: Any, grad: Any) -> None:
    param.grad = None if grad is None else grad.detach().to(param.device, param.dtype).clone()
