"""An exception raised by the cell, as a ``RemoteError`` mapped to cell lines."""

from __future__ import annotations

import traceback

from ..protocol import RemoteError, RemoteFrame
from ..verify import TRACKER_FILE

__all__ = ["CELL_FILENAME", "remote_error"]

CELL_FILENAME = "<gensyn-cell>"


def remote_error(exc: BaseException, *, source: str, line_offset: int) -> RemoteError:
    """Describe ``exc`` from the first frame in the cell on.

    Frames of the worker itself (and of the loop tracker between a cell's
    ``for`` and its iterable) are dropped; a cell frame's line number is
    shifted by ``line_offset`` so that it matches the notebook cell (whose
    first line is the magic).
    """
    cell_lines = source.splitlines()
    frames: list[RemoteFrame] = []
    seen_cell = False
    for summary in traceback.extract_tb(exc.__traceback__):
        in_cell = summary.filename == CELL_FILENAME
        seen_cell = seen_cell or in_cell
        if not seen_cell or summary.filename == TRACKER_FILE:
            continue
        lineno = summary.lineno or 0
        if in_cell:
            text = cell_lines[lineno - 1].strip() if 0 < lineno <= len(cell_lines) else ""
            lineno += line_offset
        else:
            text = (summary.line or "").strip()
        frames.append(
            RemoteFrame(
                filename=summary.filename,
                lineno=lineno,
                name=summary.name,
                line=text,
                in_cell=in_cell,
            )
        )
    cell_frames = [f for f in frames if f.in_cell]
    return RemoteError(
        type=type(exc).__qualname__,
        message=str(exc),
        frames=frames,
        cell_line=cell_frames[-1].lineno if cell_frames else None,
    )
