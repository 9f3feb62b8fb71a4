"""The Jupyter server extension: ``/gensyn/api/...`` (see ``docs/server.md``).

Enabled by ``jupyter-config/server-config/gensyn_jupyter.json`` (installed to
``etc/jupyter/jupyter_server_config.d/``). The browser reaches the coordinator
through these routes, also while the kernel is busy running a cell.
"""

from __future__ import annotations

from ._app import GensynServer
from ._errors import ApiError
from ._handlers import API_PREFIX
from ._network import NO_NETWORK, Network, default_network, resolve_network

__all__ = [
    "API_PREFIX",
    "NO_NETWORK",
    "ApiError",
    "GensynServer",
    "Network",
    "default_network",
    "resolve_network",
]
