"""Fixtures for the coordinator tests: an app on tmp_path and an async client with helpers."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gensyn_jupyter.coordinator import create_app

from .coordinator_helpers import Coord

AppFactory = Callable[..., Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_app(tmp_path: pathlib.Path) -> AppFactory:
    """Build an app on ``tmp_path`` (keyword arguments go to ``create_app``)."""

    def make(**kw: Any) -> Any:
        kw.setdefault("database_url", f"sqlite:///{tmp_path / 'coordinator.sqlite'}")
        kw.setdefault("blob_dir", tmp_path / "blobs")
        return create_app(**kw)

    return make


async def _client(app: Any) -> AsyncIterator[Coord]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://coordinator", timeout=30
        ) as http,
    ):
        yield Coord(http)


@pytest.fixture
async def coord(make_app: AppFactory) -> AsyncIterator[Coord]:
    """A client on a fresh coordinator whose lifespan (lease expiry) is running."""
    async for c in _client(make_app()):
        yield c


@pytest.fixture
async def quick(make_app: AppFactory) -> AsyncIterator[Coord]:
    """Like ``coord``, with a lease ttl of 1.5 s and heartbeats of 0.4 s.

    Short enough for expiry tests to be quick, long enough that a loaded
    2-core CI machine still gets each request in within the ttl.
    """
    async for c in _client(make_app(lease_ttl_seconds=1.5, heartbeat_seconds=0.4)):
        yield c


@pytest.fixture
def client_for() -> Callable[[Any], AsyncIterator[Coord]]:
    """``async for c in client_for(app)``: a client on an app built by the test."""
    return _client
