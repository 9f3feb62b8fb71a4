"""Where the running cell comes from: its notebook and its cell id, when the kernel can tell.

- The notebook: ``$JPY_SESSION_NAME``, set by jupyter_server for the kernels
  it starts (an absolute path on the server's machine). The home directory is
  spelled ``~``, so the user's name does not travel to a shared coordinator.
- The cell: JupyterLab and Notebook 7 send the cell's nbformat id as
  ``cellId`` in the ``execute_request``'s metadata.

Both are empty in plain IPython, a console, or a front end that sends neither.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["cell_origin"]

_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_NOTEBOOK = 1024


def _notebook() -> str:
    path = os.environ.get("JPY_SESSION_NAME", "").strip()
    if not path.endswith(".ipynb") or len(path) > _MAX_NOTEBOOK:
        return ""
    home = os.path.expanduser("~")
    if home not in ("", "~", "/") and os.path.isabs(path):
        home_prefix = home.rstrip(os.sep) + os.sep
        if path.startswith(home_prefix):
            path = "~/" + path[len(home_prefix) :].replace(os.sep, "/")
    return path


def _cell_id(shell: Any) -> str:
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if get_parent is None:
        return ""
    try:
        parent = get_parent()
    except Exception:  # another ipykernel's signature: no cell id, nothing else lost
        return ""
    metadata = parent.get("metadata") if isinstance(parent, dict) else None
    value = metadata.get("cellId") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and _CELL_ID.fullmatch(value) else ""


def cell_origin(shell: Any = None) -> tuple[str, str]:
    """The notebook and the cell id of the cell ``shell`` runs now (``""`` when unknown).

    Parameters
    ----------
    shell
        The IPython shell (the running one when omitted).
    """
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:  # pragma: no cover - IPython is a dependency
            shell = None
    return _notebook(), _cell_id(shell)
