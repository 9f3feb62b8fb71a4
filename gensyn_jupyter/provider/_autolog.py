"""Count optimizer steps and record the loss, without a host sync per step.

The tensor ``backward()`` is called on is taken as the loss; it is kept on its
device and read in batches (one ``.tolist()`` per flush).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Autolog"]

_FLUSH_EVERY_STEPS = 256
_FLUSH_EVERY_SECONDS = 0.1


class Autolog:
    """Hooks ``Tensor.backward`` and optimizer steps; emits metric batches."""

    def __init__(self, *, emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self._emit = emit
        self.steps = 0
        self._pending: Any = None
        self._steps_buf: list[int] = []
        self._loss_buf: list[Any] = []
        self._last_flush = time.monotonic()
        self._first_optimizer: int | None = None
        self._handle: Any = None
        self._orig_backward: Any = None

    def install(self) -> None:
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        orig: Callable[..., Any] = torch.Tensor.backward
        self._orig_backward = orig
        autolog = self

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if tensor.numel() == 1:
                autolog._pending = tensor.detach()
            return orig(tensor, *args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign,assignment]
        self._handle = register_optimizer_step_post_hook(self._on_step)

    def uninstall(self) -> None:
        import torch

        if self._orig_backward is not None:
            torch.Tensor.backward = self._orig_backward  # type: ignore[method-assign]
        if self._handle is not None:
            self._handle.remove()

    def _on_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # With several optimizers (a GAN), count the steps of the first one only.
        if self._first_optimizer is None:
            self._first_optimizer = id(optimizer)
        if id(optimizer) != self._first_optimizer:
            return
        self.steps += 1
        if self._pending is not None:
            self._steps_buf.append(self.steps)
            self._loss_buf.append(self._pending)
            self._pending = None
        now = time.monotonic()
        if (
            len(self._loss_buf) >= _FLUSH_EVERY_STEPS
            or now - self._last_flush >= _FLUSH_EVERY_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Read the buffered losses (one device sync) and emit them."""
        self._last_flush = time.monotonic()
        if not self._loss_buf:
            return
        import torch

        values = torch.stack([t.float().reshape(()) for t in self._loss_buf]).cpu().tolist()
        points = [
            {"step": step, "name": "loss", "value": float(value)}
            for step, value in zip(self._steps_buf, values, strict=True)
        ]
        self._steps_buf.clear()
        self._loss_buf.clear()
        self._emit(points)
