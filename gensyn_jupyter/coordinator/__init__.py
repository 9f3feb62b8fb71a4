"""The coordinator: a FastAPI service for tasks, providers, leases, blobs and events.

See ``docs/protocol.md`` for the API.  ``create_app`` builds the ASGI app;
``serve`` runs it with uvicorn on a data directory.
"""

from ._app import create_app, serve
from ._chain import ChainConfig

__all__ = ["ChainConfig", "create_app", "serve"]
