"""Helpers for the server extension tests: a coordinator client, devnet state, replies."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import time
from typing import Any

import httpx

__all__ = ["Coordinator", "body_of", "free_port", "write_devnet_state"]


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

    def submit(self) -> str:
        """Upload a bundle and create a task; return its id (the task is ``queued``)."""
        data = _bundle()
        sha = hashlib.sha256(data).hexdigest()
        r = self.http.put(f"/v1/blobs/{sha}", content=data)
        assert r.status_code in (200, 201), r.text
        r = self.http.post("/v1/tasks", json={"bundle": sha})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/tasks/{task_id}")
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
