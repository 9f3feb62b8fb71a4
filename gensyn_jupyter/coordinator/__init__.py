"""The coordinator: a FastAPI service for tasks, providers, leases, blobs and events.

See ``docs/protocol.md`` for the API.  ``create_app`` builds the ASGI app;
``serve`` runs it with uvicorn on a data directory.
"""

from ._app import create_app, serve
from ._chain import ChainConfig
from ._migrate import head_revision, migrate
from ._ratelimit import RateLimit

__all__ = ["ChainConfig", "RateLimit", "create_app", "head_revision", "migrate", "serve"]
