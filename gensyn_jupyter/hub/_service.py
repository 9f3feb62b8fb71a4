"""``python -m gensyn_jupyter.hub --config jupyterhub_config.py``: the managed Hub service.

JupyterHub starts it (``c.JupyterHub.services``) with ``JUPYTERHUB_SERVICE_URL``
(where to listen), ``JUPYTERHUB_SERVICE_PREFIX`` (``/services/<name>/``) and
the service's API token in its environment. It reads ``c.GensynClass`` from
the same config file as the Hub.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import uvicorn
from traitlets import Unicode
from traitlets.config import Application

from ._app import create_app
from ._config import GensynClass

__all__ = ["GensynClassApp", "main"]


class GensynClassApp(Application):
    """Runs the class service of a JupyterHub (see ``docs/jupyterhub.md``)."""

    name = "gensyn-class"
    description = "The gensyn class service: one account and budget per JupyterHub user."
    classes = [GensynClass]  # noqa: RUF012 (traitlets' own class attribute)
    aliases = {  # noqa: RUF012
        "config": "GensynClassApp.config_file",
        "coordinator": "GensynClass.coordinator_url",
        "data-dir": "GensynClass.data_dir",
    }

    config_file = Unicode("", help="The jupyterhub_config.py to read c.GensynClass from.").tag(
        config=True
    )

    def start(self) -> None:
        """Load the config file and serve until stopped."""
        if self.config_file:
            path = Path(self.config_file).resolve()
            self.load_config_file(path.name, path=str(path.parent))
        settings = GensynClass(parent=self)
        service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/gensyn/")
        parsed = urlparse(service_url)
        data_dir = settings.resolved_data_dir(self.config_file or None)
        app = create_app(settings, data_dir=data_dir, prefix=prefix)
        logging.basicConfig(level=logging.INFO, format="[gensyn-class %(levelname)s] %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("gensyn_jupyter.hub").info(
            "class service of %s at %s%s; keys and ledger in %s",
            settings.coordinator_url,
            service_url,
            prefix,
            data_dir,
        )
        uvicorn.run(
            app,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 80,
            log_level="warning",
            # Longer than the proxy's idle keep-alive (Node's 5 s): with uvicorn's 5 s
            # default both ends could close/reuse a socket at once, and the Hub's proxy
            # answered a student's kernel "502 Bad Gateway" (seen once in CI).
            timeout_keep_alive=75,
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m gensyn_jupyter.hub``."""
    app = GensynClassApp()
    app.initialize(argv)
    app.start()
