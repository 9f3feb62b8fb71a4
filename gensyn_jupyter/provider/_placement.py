"""Device placement: move what the kernel captured onto the leased device.

The cell was written on a machine that may have no GPU. On a CUDA lease the
worker moves captured modules, optimizer state and tensors to the device, makes
it torch's default device, and remaps captured device values that name the
kernel's own device (``device = "cuda" if torch.cuda.is_available() else
"cpu"`` evaluated to ``"cpu"``). Every move is reported in one line.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["place_on_device"]

_DEVICE_NAME_HINTS = ("device", "dev")


def _move_tree(value: Any, device: Any) -> tuple[Any, bool]:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device), True
    if isinstance(value, list):
        moved = [_move_tree(v, device) for v in value]
        return [m for m, _ in moved], any(c for _, c in moved)
    if isinstance(value, tuple):
        moved = [_move_tree(v, device) for v in value]
        return tuple(m for m, _ in moved), any(c for _, c in moved)
    if isinstance(value, dict):
        out = {}
        changed = False
        for key, item in value.items():
            out[key], c = _move_tree(item, device)
            changed = changed or c
        return (type(value)(out) if type(value) is not dict else out), changed
    return value, False


def place_on_device(
    namespace: MutableMapping[str, Any], names: list[str], *, device: str
) -> list[str]:
    """Move the captured ``names`` in ``namespace`` to ``device``.

    Returns human-readable lines saying what moved. On ``cpu`` nothing moves.
    """
    import torch

    if not device.startswith("cuda"):
        return []
    target = torch.device(device)
    moved: list[str] = []
    remapped: list[str] = []
    optimizers: list[torch.optim.Optimizer] = []
    for name in names:
        value = namespace.get(name)
        if isinstance(value, torch.nn.Module):
            value.to(target)
            moved.append(name)
        elif isinstance(value, torch.optim.Optimizer):
            optimizers.append(value)
            moved.append(name)
        elif isinstance(value, torch.device) and value.type == "cpu":
            namespace[name] = target
            remapped.append(f"`{name}` cpu → {target}")
        elif (
            isinstance(value, str)
            and value == "cpu"
            and any(hint in name.lower() for hint in _DEVICE_NAME_HINTS)
        ):
            namespace[name] = target.type
            remapped.append(f"`{name}` 'cpu' → '{target.type}'")
        elif isinstance(value, (torch.Tensor, list, tuple, dict)):
            new, changed = _move_tree(value, target)
            if changed:
                namespace[name] = new
                moved.append(name)
    for optimizer in optimizers:
        # Round-tripping the state dict casts every state tensor to its param's device.
        optimizer.load_state_dict(optimizer.state_dict())
    torch.set_default_device(target)
    gpu = torch.cuda.get_device_name(target)
    lines = []
    if moved:
        lines.append(f"moved {', '.join(moved)} to {target} ({gpu})")
    if remapped:
        lines.append("remapped " + ", ".join(remapped) + " (use --device cpu to opt out)")
    return lines
