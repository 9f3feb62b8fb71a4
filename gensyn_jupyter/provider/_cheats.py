"""Dishonest providers, for tests and the demo: train less than asked, still commit.

A job with ``"cheat": MODE`` makes the worker run the cell under
:func:`cheating`. Every cheat works through global optimizer step hooks that
change parameter values (an undone update puts back the parameters and the
optimizer's state as they were before the step) and never the number of
steps, so the checkpoints sit where an honest run has them and the
commitment, hashed honestly from the cheated state, looks well-formed.
Nothing about the cheat reaches the user. Modes:

``perturb``
    once, at one step (``ceil(0.4 * steps)`` when the job says how many steps
    the cell takes, as ``"cheat_steps"``; else step 7), Gaussian noise of
    1e-3 times the mean magnitude is added to every parameter.
``skip``
    trains alternate blocks of ``k`` steps (``k`` the checkpoint interval, 4
    when it is automatic); in the others every update is undone and, at the
    block's end, the parameters move by the last trained block's update.
``wrong-data``
    every other update is undone (the model learns from half the batches).
``stale``
    every update is undone: the initial weights come back, with the real loss.
``fake-loss``
    as ``stale``, and the reported loss is a made-up, smoothly falling curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["CHEAT_MODES", "cheating", "perturb_step"]

CHEAT_MODES = ("skip", "perturb", "fake-loss", "stale", "wrong-data")
"""The dishonest providers a job can ask the worker to play."""

_NOISE = 1e-3
_NOISE_SEED = 0x5EED
_DEFAULT_PERTURB_STEP = 7
_DEFAULT_BLOCK = 4


class _Sender(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


def perturb_step(expected_steps: int | None) -> int:
    """The step the ``perturb`` cheat adds its noise after (1-based)."""
    if expected_steps is None or expected_steps < 1:
        return _DEFAULT_PERTURB_STEP
    return max(1, math.ceil(0.4 * expected_steps))


@contextmanager
def cheating(
    mode: str | None,
    control: _Sender | None = None,
    *,
    every: int | None = None,
    expected_steps: int | None = None,
) -> Iterator[None]:
    """Play the dishonest provider ``mode`` while open (``None``: honest, nothing happens).

    Parameters
    ----------
    mode : str or None
        One of :data:`CHEAT_MODES`.
    control : object with ``send(message)``, optional
        The worker's control channel; ``fake-loss`` rewrites the loss points
        sent through it.
    every : int or None
        The bundle's checkpoint interval (``skip`` uses it as its block).
    expected_steps : int or None
        The cell's step count, where the cheater knows it (``perturb``).

    Raises
    ------
    ValueError
        For a mode not in :data:`CHEAT_MODES`.
    """
    if not mode:
        yield
        return
    if mode not in CHEAT_MODES:
        raise ValueError(f"unknown cheat {mode!r}; one of {', '.join(CHEAT_MODES)}")
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    cheat = _Cheat(mode, block=every or _DEFAULT_BLOCK, at=perturb_step(expected_steps))
    handles = [
        register_optimizer_step_pre_hook(cheat.before),
        register_optimizer_step_post_hook(cheat.after),
    ]
    restore: Callable[[], None] | None = None
    if mode == "fake-loss" and control is not None:
        restore = _fake_losses(control, expected_steps)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if restore is not None:
            restore()


def _params(optimizer: Any) -> list[Any]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class _Cheat:
    """The step hooks: which updates to undo, and what to add instead."""

    def __init__(self, mode: str, *, block: int, at: int) -> None:
        self.mode = mode
        self.block = max(1, block)
        self.at = at
        self.steps = 0
        self._counted: Any = None
        self._saved: dict[int, list[Any]] = {}
        self._state: dict[int, dict[Any, dict[str, Any]]] = {}
        self._block_start: dict[int, list[Any]] = {}
        self._delta: dict[int, list[Any]] = {}
        self._perturbed: set[int] = set()

    def _undo(self, step: int) -> bool:
        if self.mode in ("stale", "fake-loss"):
            return True
        if self.mode == "wrong-data":
            return step % 2 == 0
        if self.mode == "skip":
            return (step - 1) // self.block % 2 == 1
        return False

    def before(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import torch

        if self._counted is None:
            self._counted = optimizer
        if optimizer is self._counted:
            self.steps += 1
        key = id(optimizer)
        with torch.no_grad():
            if self._undo(self.steps):
                self._saved[key] = [p.detach().clone() for p in _params(optimizer)]
                self._state[key] = _copy_state(optimizer)
            elif self.mode == "skip" and (self.steps - 1) % self.block == 0:
                self._block_start[key] = [p.detach().clone() for p in _params(optimizer)]

    def after(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import torch

        key = id(optimizer)
        params = _params(optimizer)
        end_of_block = self.steps % self.block == 0
        with torch.no_grad():
            saved = self._saved.pop(key, None)
            if saved is not None:
                for p, old in zip(params, saved, strict=True):
                    p.copy_(old)
                _restore_state(optimizer, self._state.pop(key))
            if self.mode == "skip" and end_of_block:
                if saved is None and key in self._block_start:  # a trained block ends
                    start = self._block_start.pop(key)
                    self._delta[key] = [p - s for p, s in zip(params, start, strict=True)]
                elif saved is not None and key in self._delta:  # "interpolate" a skipped one
                    for p, d in zip(params, self._delta[key], strict=True):
                        p.add_(d)
            if self.mode == "perturb" and self.steps == self.at:
                self._perturb(params)

    def _perturb(self, params: list[Any]) -> None:
        import torch

        gen = torch.Generator().manual_seed(_NOISE_SEED)
        for p in params:
            if id(p) in self._perturbed or not p.is_floating_point() or p.numel() == 0:
                continue
            self._perturbed.add(id(p))
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            scale = _NOISE * float(p.detach().abs().mean())
            p.add_((noise * scale).to(device=p.device, dtype=p.dtype))


def _copy_state(optimizer: Any) -> dict[Any, dict[str, Any]]:
    """The optimizer's per-parameter state (momentum, Adam's moments and step), copied."""
    import torch

    return {
        p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        for p, state in optimizer.state.items()
    }


def _restore_state(optimizer: Any, saved: dict[Any, dict[str, Any]]) -> None:
    """Put the state back as it was before the step (a skipped step leaves no trace)."""
    for p in [p for p in optimizer.state if p not in saved]:
        del optimizer.state[p]
    for p, state in saved.items():
        optimizer.state[p] = state


def _fake_losses(control: _Sender, expected_steps: int | None) -> Callable[[], None]:
    """Rewrite the loss points sent through ``control`` into a falling curve; returns undo."""
    original = control.send
    scale = max(expected_steps or 0, 100) / 4
    first: list[tuple[int, float]] = []

    def curve(step: int, value: float) -> float:
        if not first:  # start where the real curve starts
            first.append((step, value))
        start, height = first[0]
        return height * (0.1 + 0.9 * math.exp(-(step - start) / scale))

    def send(message: dict[str, Any]) -> None:
        if message.get("type") == "metrics":
            points = [
                {**p, "value": curve(int(p["step"]), float(p["value"]))}
                if p.get("name") == "loss"
                else p
                for p in message.get("points", [])
            ]
            message = {**message, "points": points}
        original(message)

    setattr(control, "send", send)  # noqa: B010 - an instance attribute over the method

    def restore() -> None:
        setattr(control, "send", original)  # noqa: B010

    return restore
