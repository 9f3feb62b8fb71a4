"""Pre-flight: say which variable cannot travel, and what to do about it."""

from __future__ import annotations

import collections.abc
import inspect
import io
import socket
import threading
import types
from collections.abc import Iterator, Mapping
from typing import Any

from ._pickling import dumps
from ._util import format_bytes, type_name

__all__ = ["PreflightError", "size_error", "unpicklable_error"]

HINT_FILE = "open the file inside the cell, or pass its contents (bytes, a tensor) instead."
HINT_ITERATOR = (
    "build the generator or iterator inside the cell, or pass a list (or a DataLoader) instead."
)
HINT_THREADING = "create the lock or thread inside the cell; it cannot leave this process."
HINT_SOCKET = "open the connection inside the cell; a socket cannot leave this process."
HINT_GENERIC = "create it inside the cell, or pass plain data (tensors, lists, dicts) instead."
HINT_SIZE = (
    "load large data inside the cell (from a path or URL the provider can reach), "
    "send a smaller sample, or raise the size limit."
)

_MAX_SEARCH_DEPTH = 4
_MAX_CHILDREN = 200
_ATOMIC = (type(None), bool, int, float, complex, str, bytes)


class PreflightError(ValueError):
    """A captured variable cannot be sent to a provider; nothing was uploaded.

    Attributes
    ----------
    variable : str
        The variable at fault (for a size error: the largest input).
    type_name : str
        Its qualified type, e.g. ``_io.TextIOWrapper``.
    hint : str
        What to do about it.
    """

    def __init__(
        self,
        variable: str,
        type_name: str,
        hint: str,
        *,
        reason: str = "",
        message: str | None = None,
    ) -> None:
        self.variable = variable
        self.type_name = type_name
        self.hint = hint
        self.reason = reason
        if message is None:
            because = f": {reason.rstrip('. ')}" if reason else ""
            message = (
                f"cannot send `{variable}` ({type_name}) to a provider{because}. What to do: {hint}"
            )
        super().__init__(message)


def _hint_for(obj: Any, error: BaseException) -> str:
    text = str(error)
    if isinstance(obj, io.IOBase) or "'_io." in text:
        return HINT_FILE
    if isinstance(obj, socket.socket) or "'socket'" in text:
        return HINT_SOCKET
    threading_types = (
        type(threading.Lock()),
        type(threading.RLock()),
        threading.Thread,
        threading.Condition,
        threading.Event,
        threading.Semaphore,
    )
    if isinstance(obj, threading_types) or "'_thread." in text:
        return HINT_THREADING
    generators = (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)
    if isinstance(obj, generators) or "'generator'" in text:
        return HINT_ITERATOR
    if isinstance(obj, collections.abc.Iterator):
        return HINT_ITERATOR
    return HINT_GENERIC


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _picklable(value: Any) -> bool:
    try:
        dumps(value)
    except Exception:
        return False
    return True


def _children(obj: Any, label: str) -> Iterator[tuple[str, Any]]:
    """What ``obj`` holds, with a label a user would recognise."""
    if isinstance(obj, dict):
        for key, value in list(obj.items())[:_MAX_CHILDREN]:
            yield f"{label}[{key!r}]", value
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj[:_MAX_CHILDREN]):
            yield f"{label}[{i}]", value
    elif isinstance(obj, set | frozenset):
        for value in list(obj)[:_MAX_CHILDREN]:
            yield f"an item of {label}", value
    elif isinstance(obj, types.FunctionType):
        try:
            found = inspect.getclosurevars(obj)
        except (TypeError, ValueError):
            return
        for name, value in {**found.nonlocals, **found.globals}.items():
            yield name, value
    elif isinstance(obj, types.MethodType):
        yield f"{label}.__self__", obj.__self__
        yield f"{label}.__func__", obj.__func__
    else:
        attributes = getattr(obj, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        for key, value in list(attributes.items())[:_MAX_CHILDREN]:
            if key in ("_modules", "_parameters", "_buffers") and isinstance(value, dict):
                for sub, item in list(value.items())[:_MAX_CHILDREN]:  # nn.Module internals
                    yield f"{label}.{sub}", item
            else:
                yield f"{label}.{key}", value


def _locate(obj: Any, label: str, depth: int, seen: set[int]) -> tuple[str, Any] | None:
    """The innermost unpicklable thing ``obj`` holds, and where it sits."""
    if depth >= _MAX_SEARCH_DEPTH:
        return None
    for child_label, child in _children(obj, label):
        if isinstance(child, _ATOMIC) or id(child) in seen:
            continue
        seen.add(id(child))
        if not _picklable(child):
            return _locate(child, child_label, depth + 1, seen) or (child_label, child)
    return None


def unpicklable_error(name: str, value: Any, error: BaseException) -> PreflightError:
    """A :class:`PreflightError` for ``name``, whose value failed to pickle with ``error``."""
    found = _locate(value, name, 0, {id(value)})
    culprit = found[1] if found is not None else value
    reason = _reason(error)
    if found is not None:
        reason = f"{reason.rstrip('. ')} (found at `{found[0]}`, {type_name(culprit)})"
    return PreflightError(
        variable=name, type_name=type_name(value), hint=_hint_for(culprit, error), reason=reason
    )


def size_error(sizes: Mapping[str, tuple[str, int]], total: int, limit: int) -> PreflightError:
    """A :class:`PreflightError` for a bundle of ``total`` bytes over ``limit``.

    ``sizes`` maps each input to ``(type name, bytes)``.
    """
    largest = sorted(sizes.items(), key=lambda item: (-item[1][1], item[0]))[:3]
    listed = ", ".join(f"`{n}` ({t}) {format_bytes(b)}" for n, (t, b) in largest)
    name, (tname, _) = largest[0] if largest else ("the cell", ("source", 0))
    message = (
        f"cannot send the cell's inputs to a provider: they take {format_bytes(total)}, "
        f"over the limit of {format_bytes(limit)}; the largest are {listed}. "
        f"What to do: {HINT_SIZE}"
    )
    return PreflightError(
        variable=name, type_name=tname, hint=HINT_SIZE, reason="too large", message=message
    )
