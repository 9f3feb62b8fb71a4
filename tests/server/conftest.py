"""A real Jupyter server with the gensyn extension, and a real coordinator beside it.

pytest-jupyter's fixtures come in by a star import rather than
``pytest_plugins``: pytest refuses ``pytest_plugins`` in a conftest below the
rootdir when the whole suite runs, and a plugin's hooks (it runs every
coroutine test on its own loop) would reach the anyio tests of other
directories. Imported here, its fixtures and hooks apply to tests/server only.
"""

from __future__ import annotations

import pathlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from pytest_jupyter.jupyter_server import *  # noqa: F403
from traitlets.config import Config

from gensyn_jupyter.coordinator import create_app

from .server_helpers import Coordinator, free_port


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A coordinator on 127.0.0.1 (uvicorn in a thread), for the tests of one module."""
    data = tmp_path_factory.mktemp("coordinator")
    app = create_app(
        database_url=f"sqlite:///{data / 'coordinator.sqlite'}", blob_dir=data / "blobs"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="coordinator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the coordinator did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def coordinator(live_url: str) -> Iterator[Coordinator]:
    """A synchronous client of the live coordinator (tasks, providers, results)."""
    with httpx.Client(base_url=live_url, timeout=10) as http:
        yield Coordinator(http)


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL where nothing listens (the port stays reserved, never listened on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(autouse=True)
def gensyn_home(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """An empty ``$GENSYN_HOME`` and no ``$GENSYN_NETWORK``: nothing configured, no devnet."""
    home = tmp_path / "gensyn-home"
    home.mkdir()
    monkeypatch.setenv("GENSYN_HOME", str(home))
    monkeypatch.delenv("GENSYN_NETWORK", raising=False)
    return home


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch, live_url: str) -> str:
    """``$GENSYN_NETWORK`` set to the live coordinator."""
    monkeypatch.setenv("GENSYN_NETWORK", live_url)
    return live_url


@pytest.fixture
def allowed_alias(live_url: str) -> str:
    """The live coordinator spelled as it is on the allow-list (upper case, trailing slash)."""
    return live_url.replace("http://", "HTTP://") + "/"


@pytest.fixture  # type: ignore[no-redef]  # replaces pytest-jupyter's
def jp_server_config(allowed_alias: str) -> Config:
    """Only the gensyn extension, with the live coordinator on the allow-list."""
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"gensyn_jupyter": True}},
            "GensynServer": {"allowed_networks": [allowed_alias]},
        }
    )
