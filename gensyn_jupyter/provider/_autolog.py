"""Count optimizer steps and record the loss, without a host sync per step.

The tensor ``backward()`` is called on is taken as the loss. With gradient
accumulation (several ``backward()`` per step) the step's loss is the mean of
them; with AMP, ``GradScaler.scale(loss).backward()`` records the unscaled
loss. A step is one ``step()`` of the first optimizer seen (a skipped AMP step
is not counted). Losses and ``gensyn.log`` values stay on their device and are
read in batches: one ``.tolist()`` per flush, at most every 0.1 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Autolog"]

_FLUSH_EVERY_POINTS = 4096
_FLUSH_EVERY_SECONDS = 0.1


class Autolog:
    """Hooks ``Tensor.backward``, ``GradScaler.scale`` and optimizer steps; emits batches."""

    def __init__(self, *, emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self._emit = emit
        self.steps = 0
        self._pending: list[Any] = []
        self._scaled: dict[int, Any] = {}
        self._buf: list[tuple[int, str, Any]] = []
        self._last_flush = time.monotonic()
        self._first_optimizer: int | None = None
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        import torch
        from torch.amp.grad_scaler import GradScaler
        from torch.optim.optimizer import register_optimizer_step_post_hook

        from .._metrics import set_sink

        autolog = self
        orig_backward: Callable[..., Any] = torch.Tensor.backward
        orig_scale: Callable[..., Any] = GradScaler.scale

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if tensor.numel() == 1:
                unscaled = autolog._scaled.pop(id(tensor), None)
                autolog._pending.append(unscaled if unscaled is not None else tensor.detach())
            return orig_backward(tensor, *args, **kwargs)

        def scale(scaler: GradScaler, outputs: Any) -> Any:
            scaled = orig_scale(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
                autolog._scaled[id(scaled)] = outputs.detach()
            return scaled

        torch.Tensor.backward = backward  # type: ignore[method-assign,assignment]
        GradScaler.scale = scale  # type: ignore[method-assign,assignment]
        handle = register_optimizer_step_post_hook(self._on_step)
        set_sink(self.log)

        def undo() -> None:
            torch.Tensor.backward = orig_backward  # type: ignore[method-assign]
            GradScaler.scale = orig_scale  # type: ignore[method-assign]
            handle.remove()
            set_sink(None)

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def log(self, step: int | None, metrics: dict[str, Any]) -> None:
        """``gensyn.log``: keep the values (tensors stay on their device) for the next flush."""
        at = self.steps if step is None else int(step)
        for name, value in metrics.items():
            self._buf.append((at, str(name), value))
        self._maybe_flush()

    def _on_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._first_optimizer is None:
            self._first_optimizer = id(optimizer)
        if id(optimizer) != self._first_optimizer:
            return
        self.steps += 1
        self._scaled.clear()
        if self._pending:
            pending, self._pending = self._pending, []
            loss = pending[0] if len(pending) == 1 else _mean(pending)
            self._buf.append((self.steps, "loss", loss))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if len(self._buf) >= _FLUSH_EVERY_POINTS or now - self._last_flush >= _FLUSH_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Read the buffered values (one sync per device) and emit them."""
        self._last_flush = time.monotonic()
        if not self._buf:
            return
        buf, self._buf = self._buf, []
        values = _read_values([value for _, _, value in buf])
        points = [
            {"step": step, "name": name, "value": value}
            for (step, name, _), value in zip(buf, values, strict=True)
        ]
        self._emit(points)


def _mean(tensors: list[Any]) -> Any:
    import torch

    return torch.stack([t.float().reshape(()) for t in tensors]).mean()


def _read_values(values: list[Any]) -> list[float]:
    """Floats of numbers and one-element tensors, one ``.tolist()`` per device."""
    import torch

    out: list[float] = [0.0] * len(values)
    by_device: dict[Any, list[int]] = {}
    for index, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append(index)
        else:
            out[index] = float(value)
    for indices in by_device.values():
        stacked = torch.stack([values[i].detach().float().reshape(()) for i in indices])
        for index, number in zip(indices, stacked.cpu().tolist(), strict=True):
            out[index] = float(number)
    return out
