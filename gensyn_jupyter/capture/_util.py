"""Small helpers shared by the capture modules: canonical JSON, type names, sizes."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json", "format_bytes", "type_name"]


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as canonical JSON: sorted keys, no spaces, NaN allowed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), allow_nan=True, ensure_ascii=True
    ).encode("ascii")


def type_name(value: Any) -> str:
    """Qualified type of ``value``: ``torch.Tensor``, ``__main__.Net``, ``list``."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return str(qualname)
    return f"{module}.{qualname}"


def format_bytes(n: int) -> str:
    """Human-readable size: ``512 B``, ``3.2 MiB``, ``4.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns
