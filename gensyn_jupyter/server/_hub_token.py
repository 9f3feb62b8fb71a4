"""Under JupyterHub with the gensyn class service: where it is, and the user's Hub token.

The spawner sets ``GENSYN_NETWORK`` to the class service behind the Hub's
proxy (``<hub>/services/gensyn``), and every call there needs the user's Hub
API token. The Jupyter server has that token already
(``$JUPYTERHUB_API_TOKEN``, or ``$GENSYN_SESSION``, which the spawner sets to
the same token): :func:`class_service_headers` sends it to the class service,
and never to another network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import configured_network
from ._network import normalize

__all__ = ["ClassService", "class_service", "class_service_headers"]


@dataclass(frozen=True)
class ClassService:
    """The class service this server's user belongs to, and the user's Hub token."""

    url: str
    token: str


def class_service() -> ClassService | None:
    """The class service, when this server runs under JupyterHub with one; else None.

    Under JupyterHub (``$JUPYTERHUB_API_URL`` and a Hub token in the
    environment), the configured network is the class service when its path
    is a Hub service's (``/services/<name>``).
    """
    if not os.environ.get("JUPYTERHUB_API_URL", "").strip():
        return None
    token = (
        os.environ.get("GENSYN_SESSION", "").strip()
        or os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
    )
    if not token:
        return None
    try:
        url = configured_network()
    except ValueError:
        return None
    if not url:
        return None
    url = normalize(url)
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) < 2 or parts[-2] != "services":
        return None
    return ClassService(url=url, token=token)


def class_service_headers(network: str) -> dict[str, str]:
    """``Authorization`` with the user's Hub token for calls to the class service; else none."""
    service = class_service()
    if service is None or normalize(network) != service.url:
        return {}
    return {"Authorization": f"token {service.token}"}
