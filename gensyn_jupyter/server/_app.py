"""The extension app: configuration, the coordinator client, the routes."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, List, Unicode

from ._handlers import handlers
from ._network import Network, resolve_network
from ._proxy import CoordinatorProxy

__all__ = ["GensynServer"]


class GensynServer(ExtensionApp):
    """The gensyn server extension: ``/gensyn/api/...`` on the Jupyter server.

    Configure it as ``c.GensynServer.<trait>`` in ``jupyter_server_config.py``.
    """

    name = "gensyn_jupyter"
    description = "gensyn: the coordinator, seen from the Jupyter server (/gensyn/api/)"
    load_other_extensions = True

    allowed_networks = List(
        Unicode(),
        help=(
            "Coordinator URLs a request may name in its `network` field besides the "
            "configured network ($GENSYN_NETWORK or ~/.gensyn/config.toml) and the "
            "running devnet. Anything else is refused (403), so a web page cannot make "
            "the server send requests to an arbitrary URL."
        ),
    ).tag(config=True)

    timeout_seconds = Float(
        10.0, help="Seconds to wait for a coordinator before answering 504."
    ).tag(config=True)

    _proxy: CoordinatorProxy | None = None

    @property
    def proxy(self) -> CoordinatorProxy:
        """The server's one client of coordinators (created with the routes)."""
        if self._proxy is None:
            self._proxy = CoordinatorProxy(timeout=self.timeout_seconds)
        return self._proxy

    def resolve(self, requested: str | None) -> Network:
        """The network a request reaches (see :func:`resolve_network`)."""
        return resolve_network(requested, self.allowed_networks)

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers(self))

    async def stop_extension(self) -> None:
        """Close the coordinator client when the server shuts down."""
        if self._proxy is not None:
            await self._proxy.aclose()
            self._proxy = None
