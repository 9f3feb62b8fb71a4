"""One run of an instrumented cell: counts steps, takes and restores the training state.

The recorder (:mod:`._checkpoints`) and the replayer (:mod:`._replay`) share
it, so a replay counts steps and takes states exactly as the run did. A
step is one ``step()`` of the first optimizer that steps (as autolog counts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from ._loops import FastForwardError, LoopTracker
from ._rng import find_generators, rng_state, set_rng_state
from ._state import Found, find_objects, restore_state, state_tree

__all__ = ["RunSession", "globals_hint"]

_GLOBAL_BYTES = 16 * 1024 * 1024
"""A module-level value bigger than this (in tensor bytes) is not kept as a replay hint."""


class RunSession:
    """Step counting, loop tracking and state snapshots for one run of a cell."""

    def __init__(self, namespace: MutableMapping[str, Any], *, device: str) -> None:
        self.namespace = namespace
        self.cuda = device.startswith("cuda")
        self.tracker = LoopTracker(capture_rng=self.capture_rng, restore_rng=self.restore_rng)
        self.tracker.before_next = self._boundary
        self.steps = 0
        self.counted: Any = None
        self.stepped: list[Any] = []
        self.on_counted_step: Callable[[int], None] | None = None
        self.on_boundary: Callable[[], None] | None = None
        self.initial_ids: set[int] = set()
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        """Put the loop names into the namespace and hook optimizer steps."""
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.initial_ids = {id(v) for v in self.namespace.values()}
        names = self.tracker.names()
        self.namespace.update(names)
        handle = register_optimizer_step_post_hook(self._on_step)

        def undo() -> None:
            handle.remove()
            for name in names:
                self.namespace.pop(name, None)

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- hooks ----------------------------------------------------------------
    def _on_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.tracker.fast_forwarding:
            return  # a replay re-running part of an item before its checkpoint
        if all(o is not optimizer for o in self.stepped):
            self.stepped.append(optimizer)
        if self.counted is None:
            self.counted = optimizer
        if optimizer is not self.counted:
            return
        self.steps += 1
        self.tracker.on_step()
        if self.on_counted_step is not None:
            self.on_counted_step(self.steps)

    def _boundary(self) -> None:
        if self.on_boundary is not None:
            self.on_boundary()

    # -- random state -----------------------------------------------------------
    def capture_rng(self) -> dict[str, Any] | None:
        """Every generator's state; None when one cannot be read (never fails the cell)."""
        try:
            return rng_state(find_generators(self.namespace), cuda=self.cuda)
        except Exception:
            return None

    def restore_rng(self, state: Mapping[str, Any]) -> None:
        set_rng_state(state, find_generators(self.namespace))

    # -- snapshots ----------------------------------------------------------------
    def found(self) -> Found:
        return find_objects(self.namespace, stepped=self.stepped)

    def take(self) -> tuple[dict[str, Any], Found]:
        """The state now (live tensors: hash or save it before the run goes on)."""
        found = self.found()
        position = self.tracker.position()
        position["counted"] = next(
            (name for name, opt in found.optimizers.items() if opt is self.counted), None
        )
        tree = state_tree(found, step=self.steps, rng=self.capture_rng(), position=position)
        return tree, found

    def restore(self, tree: Mapping[str, Any], hint: Mapping[str, Any] | None) -> None:
        """Put the run back to ``tree``: objects, random state, loop counters, step count."""
        found = self.found()
        if found.anonymous:
            raise FastForwardError("an optimizer the namespace does not name cannot be restored")
        try:
            restore_state(found, tree)
            self.restore_rng(tree["rng"])
        except (LookupError, RuntimeError, ValueError, KeyError) as exc:
            raise FastForwardError(f"the checkpoint does not fit this run: {exc}") from exc
        position = tree["position"]
        self.tracker.restore_position(position)
        self.steps = int(tree["step"])
        name = position.get("counted")
        self.counted = found.optimizers.get(name) if name is not None else None
        self.stepped = [self.counted] if self.counted is not None else []
        if hint:
            self.namespace.update(hint)


def globals_hint(
    namespace: Mapping[str, Any], *, found: Found, initial_ids: set[int]
) -> dict[str, Any]:
    """Module-level plain values and tensors (``loss``, ``losses``, ``perm``) for a replay.

    Not hashed (a ``time.time()`` would never match); a replay restores them
    so that code after a skipped loop finds its variables. Values that were
    there before the cell ran, tensors of the found objects and values over
    16 MiB are left out.
    """
    from ..capture import is_tree

    owned = _owned_tensor_ids(found)
    out: dict[str, Any] = {}
    for name in sorted(namespace):
        if name.startswith("__") or not name.isidentifier():
            continue
        value = namespace[name]
        if id(value) in initial_ids or id(value) in owned:
            continue
        if not is_tree(value) or _tensor_bytes(value, owned) > _GLOBAL_BYTES:
            continue
        out[name] = value
    return out


def _owned_tensor_ids(found: Found) -> set[int]:
    ids: set[int] = set()
    for module in found.modules.values():
        ids.update(id(t) for t in module.parameters())
        ids.update(id(t) for t in module.buffers())
    for opt in found.optimizers.values():
        for group in opt.param_groups:
            ids.update(id(p) for p in group["params"])
    return ids


def _tensor_bytes(value: Any, owned: set[int], depth: int = 0) -> int:
    """Tensor bytes in ``value``; a tensor owned by a found object counts as too big."""
    import torch

    if depth > 20:
        return 0
    if isinstance(value, torch.Tensor):
        return _GLOBAL_BYTES + 1 if id(value) in owned else value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v, owned, depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, owned, depth + 1) for v in value.values())
    return 0
