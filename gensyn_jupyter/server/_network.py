"""Which coordinator a request may reach.

The default is what the kernel would use: ``$GENSYN_NETWORK``, else
``config.toml``'s ``network``, else the running local devnet. A request may
name another network only when it is one of those or on the allow-list, so a
web page cannot make the server send requests to an arbitrary URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..config import configured_network, running_devnet
from ._errors import ApiError

__all__ = ["NO_NETWORK", "Network", "NetworkSource", "default_network", "resolve_network"]

NetworkSource = Literal["GENSYN_NETWORK", "config.toml", "devnet", "request"]

NO_NETWORK = (
    "no gensyn network configured and no devnet running; "
    "run %gensyn devnet up or set GENSYN_NETWORK"
)


@dataclass(frozen=True)
class Network:
    """A coordinator URL (no trailing slash) and where it came from."""

    url: str
    source: NetworkSource


def normalize(url: str) -> str:
    """``url`` stripped, with scheme and host lower-cased and no trailing slash."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme and parts.netloc:
        text = urlunsplit(
            (parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment)
        )
    return text.rstrip("/")


def _devnet_url() -> str | None:
    """The running devnet's URL, read now (the devnet may start after the server)."""
    state = running_devnet()
    return normalize(state.url) if state is not None else None


def _configured() -> tuple[Network | None, str | None]:
    """The configured network, or the reason ``config.toml`` could not be read."""
    try:
        url = configured_network()
    except ValueError as exc:
        return None, str(exc)
    if url is None:
        return None, None
    source: NetworkSource = (
        "GENSYN_NETWORK" if os.environ.get("GENSYN_NETWORK", "").strip() else "config.toml"
    )
    return Network(normalize(url), source), None


def default_network() -> Network:
    """The network the kernel would use, without starting a devnet.

    Raises
    ------
    ApiError
        503 when nothing is configured and no devnet runs, or ``config.toml``
        cannot be read.
    """
    configured, problem = _configured()
    if configured is not None:
        return configured
    if problem is not None:
        raise ApiError(503, problem)
    devnet = _devnet_url()
    if devnet is None:
        raise ApiError(503, NO_NETWORK)
    return Network(devnet, "devnet")


def resolve_network(requested: str | None, allowed: Iterable[str]) -> Network:
    """The network a request reaches: ``requested`` if permitted, else the default.

    Parameters
    ----------
    requested
        The ``network`` the request named, or ``None``/blank for the default.
    allowed
        ``GensynServer.allowed_networks``: URLs a request may name besides the
        configured network and the devnet.

    Raises
    ------
    ApiError
        403 (``field: "network"``) for a network that is not permitted; 503 as
        :func:`default_network` when none was requested and none is available.
    """
    if requested is None or not requested.strip():
        return default_network()
    url = normalize(requested)
    permitted = {normalize(a) for a in allowed}
    configured, _ = _configured()
    if configured is not None:
        permitted.add(configured.url)
    devnet = _devnet_url()
    if devnet is not None:
        permitted.add(devnet)
    if url in permitted:
        return Network(url, "request")
    raise ApiError(
        403,
        f"network {url} is not allowed; add it to c.GensynServer.allowed_networks",
        "network",
    )
