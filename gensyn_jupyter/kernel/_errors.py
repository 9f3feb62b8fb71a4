"""Errors shown in a cell as a short message, not as the magic's own traceback."""

from __future__ import annotations

import linecache

from ..protocol import RemoteError

__all__ = ["GensynError", "RemoteTaskError"]


class GensynError(Exception):
    """A problem the user can act on; IPython shows just the message."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class RemoteTaskError(GensynError):
    """The cell raised on the provider; the traceback points at the cell's lines."""

    def __init__(self, *, task_id: str, provider: str | None, error: RemoteError) -> None:
        where = f" on provider {provider}" if provider else ""
        super().__init__(f"task {task_id} failed{where}: {error.type}: {error.message}")
        self.task_id = task_id
        self.remote = error

    def _render_traceback_(self) -> list[str]:
        lines = [f"Remote traceback (task {self.task_id}, most recent call last):"]
        for frame in self.remote.frames:
            text = frame.line or linecache.getline(frame.filename, frame.lineno).strip()
            if frame.in_cell:
                lines.append(f"  Cell line {frame.lineno}, in <cell>")
            else:
                lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if text:
                lines.append(f"    {text}")
        lines.append(f"{self.remote.type}: {self.remote.message}")
        return lines
