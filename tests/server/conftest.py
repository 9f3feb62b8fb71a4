"""A real Jupyter server with the gensyn extension, and a real coordinator beside it.

pytest-jupyter's fixtures come in by a star import rather than
``pytest_plugins``: pytest refuses ``pytest_plugins`` in a conftest below the
rootdir when the whole suite runs, and a plugin's hooks (it runs every
coroutine test on its own loop) would reach the anyio tests of other
directories. Imported here, its fixtures and hooks apply to tests/server only.
"""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403
from traitlets.config import Config

from gensyn_jupyter.chain import Devchain, start_devchain
from gensyn_jupyter.coordinator import create_app

from .server_helpers import Api, Coordinator, PaidNetwork, body_of, paid_network_on, serve


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A coordinator on 127.0.0.1 (uvicorn in a thread), for the tests of one module."""
    data = tmp_path_factory.mktemp("coordinator")
    app = create_app(
        database_url=f"sqlite:///{data / 'coordinator.sqlite'}", blob_dir=data / "blobs"
    )
    with serve(app) as url:
        yield url


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


@pytest.fixture
def keystore_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """The server's keystore directory (``c.GensynServer.keystore_dir``), empty."""
    return tmp_path / "gensyn-data" / "keystore"


@pytest.fixture  # type: ignore[no-redef]  # replaces pytest-jupyter's
def jp_server_config(allowed_alias: str, keystore_dir: pathlib.Path) -> Config:
    """Only the gensyn extension, with the live coordinator on the allow-list.

    The wallet keeps its keys in ``keystore_dir`` with a cheap scrypt (2**10).
    """
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"gensyn_jupyter": True}},
            "GensynServer": {
                "allowed_networks": [allowed_alias],
                "keystore_dir": str(keystore_dir),
                "keystore_scrypt_n": 2**10,
            },
        }
    )


@pytest.fixture(scope="module")
def devchain() -> Iterator[Devchain]:
    """A dev chain (anvil when installed, else the embedded node) for one test module."""
    node = start_devchain()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def paid(devchain: Devchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidNetwork]:
    """A coordinator with escrow on ``devchain`` (and a faucet), for one test module."""
    with paid_network_on(devchain, tmp_path_factory.mktemp("paid")) as network:
        yield network


@pytest.fixture
def paid_network(monkeypatch: pytest.MonkeyPatch, paid: PaidNetwork) -> PaidNetwork:
    """``$GENSYN_NETWORK`` set to the coordinator with escrow."""
    monkeypatch.setenv("GENSYN_NETWORK", paid.url)
    return paid


@pytest.fixture
def paid_coordinator(paid: PaidNetwork) -> Iterator[Coordinator]:
    """A synchronous client of the coordinator with escrow."""
    with httpx.Client(base_url=paid.url, timeout=10) as http:
        yield Coordinator(http)


@pytest.fixture
def gensyn_api(jp_fetch: Any) -> Api:
    """``await gensyn_api("wallet", method=..., body=..., params=...)`` → (status, JSON body).

    ``raw=`` sends a body as it is (for malformed JSON).
    """

    async def call(
        *path: str,
        method: str = "GET",
        body: Any = None,
        params: dict[str, Any] | None = None,
        raw: str | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "raise_error": False}
        if method in ("POST", "PUT"):
            kwargs["body"] = raw if raw is not None else "" if body is None else json.dumps(body)
        response = await jp_fetch("gensyn", "api", *path, params=params, **kwargs)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.code, body_of(response)

    return call
