"""The extension app: configuration, the coordinator client, the routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Int, List, TraitError, Unicode, default, validate

from ..chain import DEFAULT_SCRYPT_N, Keystore, default_keystore_dir
from ._errors import ApiError
from ._event_handlers import event_handlers
from ._handlers import handlers
from ._hub_class import class_handlers
from ._network import Network, default_network, resolve_network
from ._proxy import CoordinatorProxy
from ._relay import EventRelay
from ._wallet import Wallet
from ._wallet_handlers import wallet_handlers

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

    keystore_dir = Unicode(
        help=(
            "Directory of the wallet's encrypted keys (Web3 Secret Storage, scrypt); the "
            "auto-approve budget (budget.json) and its ledger are kept there too. "
            "Default: $GENSYN_KEYSTORE_DIR, else <jupyter data dir>/gensyn/keystore."
        ),
    ).tag(config=True)

    events_heartbeat_seconds = Float(
        15.0,
        help="Seconds of silence after which GET /gensyn/api/events sends a keep-alive comment.",
    ).tag(config=True)

    keystore_scrypt_n = Int(
        DEFAULT_SCRYPT_N,
        help="scrypt work factor of new keystore files (a power of two; the standard 2**18).",
    ).tag(config=True)

    @default("keystore_dir")
    def _default_keystore_dir(self) -> str:
        return str(default_keystore_dir())

    @validate("keystore_scrypt_n")
    def _valid_scrypt_n(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 2 or value & (value - 1):
            raise TraitError(f"keystore_scrypt_n must be a power of two above 1, got {value}")
        return value

    _proxy: CoordinatorProxy | None = None
    _wallet: Wallet | None = None
    _relays: set[EventRelay] | None = None

    @property
    def relays(self) -> set[EventRelay]:
        """The event streams open now (closed when the server stops)."""
        if self._relays is None:
            self._relays = set()
        return self._relays

    @property
    def proxy(self) -> CoordinatorProxy:
        """The server's one client of coordinators (created with the routes)."""
        if self._proxy is None:
            self._proxy = CoordinatorProxy(timeout=self.timeout_seconds)
        return self._proxy

    @property
    def wallet(self) -> Wallet:
        """The server's wallet: keystore, sessions, budget (created on first use)."""
        if self._wallet is None:
            keystore = Keystore(
                directory=Path(self.keystore_dir).expanduser(), scrypt_n=self.keystore_scrypt_n
            )
            self._wallet = Wallet(
                keystore=keystore,
                timeout=self.timeout_seconds,
                log=self.log,
                default_network=_default_url,
            )
        return self._wallet

    def resolve(self, requested: str | None) -> Network:
        """The network a request reaches (see :func:`resolve_network`)."""
        return resolve_network(requested, self.allowed_networks)

    def initialize_handlers(self) -> None:
        # The wallet's routes first: the last route of handlers() answers 404 for the rest.
        self.handlers.extend(wallet_handlers(self))
        self.handlers.extend(event_handlers(self))
        self.handlers.extend(class_handlers(self))
        self.handlers.extend(handlers(self))

    async def stop_extension(self) -> None:
        """Close the event streams and the coordinator clients, lock the wallet."""
        for relay in list(self.relays):
            await relay.aclose()
        if self._wallet is not None:
            self._wallet.close()
            self._wallet = None
        if self._proxy is not None:
            await self._proxy.aclose()
            self._proxy = None


def _default_url() -> str | None:
    """The network the kernel would use now, or ``None`` (for the auto-approve loop)."""
    try:
        return default_network().url
    except ApiError:
        return None
