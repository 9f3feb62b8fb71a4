"""Reading executed notebooks in tests: what a cell showed, as text."""

from __future__ import annotations

import nbformat

__all__ = ["cell_text", "code_cell"]


def cell_text(cell: nbformat.NotebookNode) -> str:
    """Streams, errors (``Name: value``) and the plain text of rich outputs, in order."""
    text = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text.append(out["text"])
        elif out.get("output_type") == "error":
            text.append(f"{out['ename']}: {out['evalue']}\n")
        elif "data" in out:
            text.append(out["data"].get("text/plain", ""))
    return "".join(text)


def code_cell(nb: nbformat.NotebookNode, starts: str) -> nbformat.NotebookNode:
    """The first code cell whose source starts with ``starts``."""
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts))
