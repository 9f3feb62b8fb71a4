"""Where ``gensyn.log`` sends metrics: nowhere locally, the provider's autolog remotely."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["log", "set_sink"]

_Sink = Callable[[int | None, dict[str, Any]], None]
_sink: _Sink | None = None


def set_sink(sink: _Sink | None) -> None:
    """Install the receiver of ``log`` calls (the provider's worker does this)."""
    global _sink
    _sink = sink


def log(*, step: int | None = None, **metrics: Any) -> None:
    """Record metrics of the current optimizer step (or ``step``) for the live chart.

    Values may be Python numbers or one-element tensors; tensors are read in
    batches, not one host sync per call. Outside a remote run this does
    nothing, so a cell behaves the same locally.

    Examples
    --------
    >>> import gensyn_jupyter as gensyn
    >>> gensyn.log(accuracy=0.93)
    """
    if _sink is not None:
        _sink(step, metrics)
