"""Helpers shared by the coordinator tests: bundles, and a client that knows the API."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

__all__ = ["Coord", "Provider", "bundle_bytes", "sha"]


def bundle_bytes(**inputs_blob: str) -> bytes:
    """A valid bundle JSON whose inputs name the given blobs (name -> sha)."""
    bundle = {
        "source": "loss = 1.0\n",
        "inputs": [
            {"name": n, "kind": "tree", "type_name": "torch.Tensor", "blob": sha}
            for n, sha in inputs_blob.items()
        ],
        "outputs": ["loss"],
        "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
    }
    return json.dumps(bundle).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Coord:
    """An ``httpx.AsyncClient`` on the app plus the calls tests repeat."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def upload(self, data: bytes) -> str:
        name = sha(data)
        r = await self.http.put(f"/v1/blobs/{name}", content=data)
        assert r.status_code in (200, 201), r.text
        return name

    async def submit(self, **spec: Any) -> dict[str, Any]:
        if "bundle" not in spec:
            spec["bundle"] = await self.upload(bundle_bytes())
        r = await self.http.post("/v1/tasks", json=spec)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def register(
        self, name: str = "box", device_type: str = "cpu", gpus: int = 0
    ) -> Provider:
        info = {
            "name": name,
            "device_type": device_type,
            "gpus": [{"name": "NVIDIA H200", "memory_bytes": 1}] * gpus,
            "cpu_count": 2,
            "python": "3.11.7",
            "torch": "2.13.0",
        }
        r = await self.http.post("/v1/providers", json=info)
        assert r.status_code == 201, r.text
        body = r.json()
        return Provider(self.http, body["provider"]["id"], body["token"], name)

    async def task(self, task_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def events(self, task_id: str, after: int = 0) -> list[dict[str, Any]]:
        r = await self.http.get(
            f"/v1/tasks/{task_id}/events", params={"format": "json", "after": after}
        )
        assert r.status_code == 200, r.text
        return list(r.json())


class Provider:
    """A registered provider: its id, token and authenticated calls."""

    def __init__(self, http: httpx.AsyncClient, pid: str, token: str, name: str) -> None:
        self.http, self.id, self.token, self.name = http, pid, token, name
        self.auth = {"Authorization": f"Bearer {token}"}

    async def lease(self, wait: float = 0.0) -> httpx.Response:
        return await self.http.post(
            f"/v1/providers/{self.id}/lease", params={"wait": wait}, headers=self.auth
        )

    async def heartbeat(self) -> httpx.Response:
        return await self.http.post(f"/v1/providers/{self.id}/heartbeat", headers=self.auth)

    async def post_events(self, lease_id: str, *events: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            f"/v1/leases/{lease_id}/events", json={"events": list(events)}, headers=self.auth
        )

    async def post_result(self, lease_id: str, **manifest: Any) -> httpx.Response:
        return await self.http.post(
            f"/v1/leases/{lease_id}/result", json=manifest, headers=self.auth
        )
