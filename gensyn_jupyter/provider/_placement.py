"""Device placement: move what the kernel captured onto the leased device.

The cell was written on a machine that may have no GPU. On a CUDA lease the
worker moves captured modules, optimizer state and tensors to the device and
remaps captured device values that name the kernel's own device
(``device = "cuda" if torch.cuda.is_available() else "cpu"`` evaluated to
``"cpu"``). Every move is reported in one line; after the run, moved tensors
come back to the CPU and remapped names get the kernel's value back.

torch's default device is left alone: ``torch.set_default_device("cuda")``
breaks the most common loop there is, a shuffling ``DataLoader`` (its sampler
draws ``randperm`` with a CPU generator: "Expected a 'cuda' device type for
generator"), seen on an H200.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Placement", "place_on_device"]

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


@dataclass
class Placement:
    """What :func:`place_on_device` changed, so results go back as the kernel had them."""

    lines: list[str] = field(default_factory=list)
    moved_trees: list[str] = field(default_factory=list)
    remapped: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def restore(self, namespace: MutableMapping[str, Any]) -> None:
        """Bring moved tensors back to the CPU and undo device remaps the cell kept."""
        import torch

        for name in self.moved_trees:
            if name in namespace:
                namespace[name], _ = _move_tree(namespace[name], torch.device("cpu"))
        for name, (original, replaced) in self.remapped.items():
            if name in namespace and namespace[name] == replaced:
                namespace[name] = original


def place_on_device(
    namespace: MutableMapping[str, Any], names: list[str], *, device: str
) -> Placement:
    """Move the captured ``names`` in ``namespace`` to ``device``.

    Returns what moved, with human-readable lines. On ``cpu`` nothing moves.
    """
    import torch

    placement = Placement()
    if not device.startswith("cuda"):
        return placement
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
            placement.remapped[name] = (value, target)
            remapped.append(f"`{name}` cpu → {target}")
        elif (
            isinstance(value, str)
            and value == "cpu"
            and any(hint in name.lower() for hint in _DEVICE_NAME_HINTS)
        ):
            namespace[name] = target.type
            placement.remapped[name] = (value, target.type)
            remapped.append(f"`{name}` 'cpu' → '{target.type}'")
        elif isinstance(value, (torch.Tensor, list, tuple, dict)):
            new, changed = _move_tree(value, target)
            if changed:
                namespace[name] = new
                placement.moved_trees.append(name)
                moved.append(name)
    for optimizer in optimizers:
        # Round-tripping the state dict casts every state tensor to its param's device.
        optimizer.load_state_dict(optimizer.state_dict())
    gpu = torch.cuda.get_device_name(target)
    if moved:
        placement.lines.append(f"moved {', '.join(moved)} to {target} ({gpu})")
    if remapped:
        placement.lines.append("remapped " + ", ".join(remapped) + " (use --device cpu to opt out)")
    return placement
