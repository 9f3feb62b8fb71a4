"""Where a task came from: its notebook as a path the browser can open, and the cell.

The kernel records the notebook as it knows it (``$JPY_SESSION_NAME``: an
absolute path on the server's machine, the home directory spelled ``~``). The
browser opens files by their path below the Jupyter server's root, so the
server translates: a notebook outside the root (another user's, on a shared
coordinator) has no path here and cannot be opened.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from ..protocol import Task, TaskSpec

__all__ = ["contents_path", "origin_fields", "size_text", "task_with_origin"]


def contents_path(notebook: str, root_dir: str | None) -> str | None:
    """``notebook`` as a path below ``root_dir`` (``/``-separated), or ``None``.

    ``None`` when it is empty, not a notebook (``.ipynb``), or outside the root.
    A relative path is taken as one already below the root.
    """
    if not notebook or not notebook.endswith(".ipynb") or not root_dir:
        return None
    raw = os.path.expanduser(notebook) if notebook.startswith("~") else notebook
    if not os.path.isabs(raw):
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if not parts or ".." in parts or parts[0] == "/":
            return None
        return "/".join(parts)
    try:
        relative = Path(raw).resolve().relative_to(Path(root_dir).expanduser().resolve())
    except (ValueError, OSError):
        return None
    text = relative.as_posix()
    return text if text not in ("", ".") else None


def size_text(n: int) -> str:
    """Bytes for a person: ``'512 B'``, ``'1.2 MB'`` (powers of 1000, as the kernel says them)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def origin_fields(spec: TaskSpec, root_dir: str | None) -> dict[str, Any]:
    """``notebook``, ``notebook_path`` (openable here, or null) and ``cell_id`` of a spec."""
    return {
        "notebook": spec.notebook,
        "notebook_path": contents_path(spec.notebook, root_dir),
        "cell_id": spec.cell_id,
    }


def task_with_origin(task: Task, root_dir: str | None) -> dict[str, Any]:
    """The task as JSON, plus ``notebook_path``: where this server opens its notebook."""
    return {
        **task.model_dump(mode="json"),
        "notebook_path": contents_path(task.spec.notebook, root_dir),
    }
