"""Helpers for the server extension tests: a coordinator client, devnet state, replies."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Devchain, Market, MarketConfig
from gensyn_jupyter.coordinator import ChainConfig, create_app

__all__ = [
    "ETH",
    "Api",
    "Coordinator",
    "PaidNetwork",
    "body_of",
    "free_port",
    "key_of",
    "paid_network_on",
    "serve",
    "write_devnet_state",
]

ETH = 10**18

Api = Callable[..., Awaitable[tuple[int, Any]]]
"""``await api(*path, method=, body=, params=, raw=)`` → (status, JSON body)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body_of(response: Any) -> Any:
    """The JSON body of a tornado ``HTTPResponse`` (or ``HTTPClientError.response``)."""
    return json.loads(response.body)


def write_devnet_state(home: pathlib.Path, url: str, pid: int | None = None) -> None:
    """Write ``devnet.json`` as a running devnet does (pid: this process, alive)."""
    devnet = home / "devnet"
    devnet.mkdir(exist_ok=True)
    state = {
        "pid": os.getpid() if pid is None else pid,
        "url": url,
        "providers": 0,
        "data_dir": str(devnet),
        "started_at": time.time(),
    }
    (devnet / "devnet.json").write_text(json.dumps(state))


def _bundle() -> bytes:
    return json.dumps(
        {
            "source": "loss = 1.0\n",
            "inputs": [],
            "outputs": ["loss"],
            "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
        }
    ).encode()


class Coordinator:
    """The calls a notebook and a provider would make, straight to the coordinator."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self._sessions: dict[str, str] = {}  # task id -> the session it was submitted with

    def submit(self) -> str:
        """Upload a bundle and create a task; return its id (the task is ``queued``)."""
        data = _bundle()
        sha = hashlib.sha256(data).hexdigest()
        r = self.http.put(f"/v1/blobs/{sha}", content=data)
        assert r.status_code in (200, 201), r.text
        r = self.http.post("/v1/tasks", json={"bundle": sha})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def submit_as(self, token: str, **spec: Any) -> dict[str, Any]:
        """Submit a task with a session token, as a kernel does on a paid network."""
        data = _bundle()
        sha = hashlib.sha256(data).hexdigest()
        r = self.http.put(f"/v1/blobs/{sha}", content=data)
        assert r.status_code in (200, 201), r.text
        auth = {"Authorization": f"Bearer {token}"}
        r = self.http.post("/v1/tasks", json={"bundle": sha, **spec}, headers=auth)
        assert r.status_code == 201, r.text
        self._sessions[r.json()["id"]] = token
        return dict(r.json())

    def task(self, task_id: str) -> dict[str, Any]:
        """The task, read with the session it was submitted with (reads are the owner's)."""
        token = self._sessions.get(task_id)
        auth = {"Authorization": f"Bearer {token}"} if token else None
        r = self.http.get(f"/v1/tasks/{task_id}", headers=auth)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def register(self, name: str) -> tuple[str, dict[str, str]]:
        """Register a CPU provider; return its id and auth header."""
        info = {"name": name, "device_type": "cpu", "cpu_count": 2, "python": "3.11", "torch": "2"}
        r = self.http.post("/v1/providers", json=info)
        assert r.status_code == 201, r.text
        body = r.json()
        return str(body["provider"]["id"]), {"Authorization": f"Bearer {body['token']}"}

    def settle(self, task_id: str) -> None:
        """Run ``task_id`` to ``settled``: a provider leases it and posts an empty result.

        Other queued tasks may be leased first (FIFO); those are cancelled on the way.
        """
        pid, auth = self.register("settler")
        for _ in range(50):
            r = self.http.post(f"/v1/providers/{pid}/lease", params={"wait": 0}, headers=auth)
            assert r.status_code == 200, (r.status_code, r.text)
            lease = r.json()
            if lease["task"]["id"] != task_id:
                self.http.post(f"/v1/tasks/{lease['task']['id']}/cancel")
                continue
            r = self.http.post(f"/v1/leases/{lease['id']}/result", json={}, headers=auth)
            assert r.status_code == 200, r.text
            assert self.task(task_id)["state"] == "settled"
            return
        raise AssertionError(f"task {task_id} was never leased")


def key_of(account: LocalAccount) -> str:
    """The account's private key as 0x-hex (what a user pastes into the import form)."""
    return "0x" + bytes(account.key).hex()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its URL."""
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


@dataclass(frozen=True)
class PaidNetwork:
    """A coordinator with escrow: its URL, the market, and the chain with its dev accounts."""

    url: str
    market: Market
    chain: Devchain


@contextmanager
def paid_network_on(chain: Devchain, data: pathlib.Path) -> Iterator[PaidNetwork]:
    """Deploy a market on ``chain`` and serve a coordinator with it (accounts as on a devnet).

    Operator 1, faucet 7, referee 8, treasury 9 (docs/payments.md); the user is 0.
    """
    acc = chain.accounts
    market = Market.deploy(
        w3=Web3(HTTPProvider(chain.rpc_url)),
        deployer=acc[0],
        config=MarketConfig(
            operator=acc[1].address,
            referee=acc[8].address,
            treasury=acc[9].address,
            min_stake=ETH,
            min_bond=ETH // 10,
            unbonding_delay=60,
            challenge_window=1,
        ),
    )
    app = create_app(
        database_url=f"sqlite:///{data / 'coordinator.sqlite'}",
        blob_dir=data / "blobs",
        chain=ChainConfig(
            rpc_url=chain.rpc_url,
            market=market.address,
            operator_key=key_of(acc[1]),
            faucet_key=key_of(acc[7]),
            poll_seconds=0.05,
            from_block=int(market.w3.eth.block_number),
        ),
    )
    with serve(app) as url:
        yield PaidNetwork(url=url, market=market, chain=chain)
