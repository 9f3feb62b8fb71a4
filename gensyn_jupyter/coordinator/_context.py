"""What every route needs: the database, the blob store, the notifiers, the settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, ParamSpec, TypeVar, cast

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ._blobs import BlobStore
from ._chain import ChainLink
from ._db import Database
from ._errors import ApiError
from ._events import Notifier

__all__ = ["Context", "Ctx", "Settings", "Token", "get_context", "in_thread"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Settings:
    """Timing and size limits of one coordinator."""

    lease_ttl_seconds: float
    heartbeat_seconds: float
    max_blob_bytes: int
    max_json_bytes: int
    fallback_poll_seconds: float = 1.0
    max_metric_points: int = 200_000
    """Most metric points one ``POST /v1/leases/{id}/events`` may carry (413 beyond)."""
    sse_ping_seconds: float = 15.0

    @property
    def offline_after_seconds(self) -> float:
        """A provider silent this long is shown ``offline`` (three heartbeats)."""
        return 3 * self.heartbeat_seconds


@dataclass
class Context:
    """The coordinator's state, shared by its routes and background tasks."""

    db: Database
    blobs: BlobStore
    settings: Settings
    events: Notifier = field(default_factory=Notifier)
    """Set when an event is appended to any task."""
    queue: Notifier = field(default_factory=Notifier)
    """Set when a task becomes ``queued``."""
    chain: ChainLink | None = None
    """The market and operator key; None on a free network (no escrow)."""
    skipped: dict[tuple[str, str], float] = field(default_factory=dict)
    """(task, provider) pairs whose assignment the chain refused, and until when that
    provider's claims pass the task over (one stuck task blocks no queue)."""


def get_context(request: Request) -> Context:
    """FastAPI dependency: the app's ``Context``."""
    return cast(Context, request.app.state.coordinator)


Ctx = Annotated[Context, Depends(get_context)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ProviderToken",
    description="the token from the provider's registration (POST /v1/providers)",
)


def _token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' with the token "
            "the provider registration returned",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


Token = Annotated[str, Depends(_token)]


async def in_thread(fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run the blocking ``fn`` (a database transaction) off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
