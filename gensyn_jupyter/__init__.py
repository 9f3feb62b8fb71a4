"""gensyn-jupyter: train from a notebook cell on a verified network of pooled GPUs.

``%load_ext gensyn_jupyter`` registers ``%%gensyn_train`` and ``%gensyn``;
``gensyn_jupyter.log(step=..., **metrics)`` adds metrics to the live chart of a
remote run (and does nothing locally).
"""

from __future__ import annotations

from typing import Any

from ._metrics import log

__all__ = ["__version__", "load_ipython_extension", "log"]

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (imports of the heavy parts happen here, not at import)."""
    from .kernel import GensynMagics

    ipython.register_magics(GensynMagics)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "gensyn-jupyter"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (``/gensyn/api/``), enabled by ``jupyter-config/``."""
    from .server import GensynServer

    return [{"module": "gensyn_jupyter.server", "app": GensynServer}]
