"""A lease's life: replaced, cancelled, expired, kept alive, and surviving a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .coordinator_helpers import Coord

pytestmark = pytest.mark.anyio

_LOSS = {"kind": "metrics", "data": {"points": [{"step": 1, "name": "loss", "value": 0.25}]}}


async def _wait_for(coord: Coord, task_id: str, state: str, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        task = await coord.task(task_id)
        if task["state"] == state:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} is {task['state']}, not {state}, after {within} s")


async def _providers(coord: Coord) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in (await coord.http.get("/v1/providers")).json()}


async def test_asking_for_a_new_lease_fails_the_unfinished_task(coord: Coord) -> None:
    first = await coord.submit()
    second = await coord.submit()
    provider = await coord.register("flaky")
    old = (await provider.lease()).json()
    new = (await provider.lease()).json()
    assert new["task"]["id"] == second["id"]
    failed = await coord.task(first["id"])
    assert failed["state"] == "failed"
    assert "asked for a new task while this one was still running" in failed["error"]
    r = await provider.post_events(old["id"], _LOSS)
    assert r.status_code == 409 and "asked for a new lease" in r.json()["detail"]


async def test_cancel_while_running_reaches_the_provider(coord: Coord) -> None:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    r = await coord.http.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert (await provider.heartbeat()).json() == {"cancel": [task["id"]]}
    assert (await provider.post_events(lease["id"], _LOSS)).json() == {
        "accepted": 0,
        "cancelled": True,
    }
    r = await provider.post_result(lease["id"])
    assert r.status_code == 409 and "task was cancelled" in r.json()["detail"]
    assert (await provider.heartbeat()).json() == {"cancel": []}
    assert (await coord.task(task["id"]))["state"] == "cancelled"
    assert (await _providers(coord))[provider.id]["state"] == "idle"
    events = await coord.events(task["id"])
    assert [e["data"]["state"] for e in events] == ["queued", "running", "cancelled"]


async def test_a_silent_provider_loses_its_lease_and_the_task_fails(quick: Coord) -> None:
    task = await quick.submit()
    provider = await quick.register("ghost")
    lease = (await provider.lease()).json()
    failed = await _wait_for(quick, task["id"], "failed", within=5)
    assert failed["error"] == (
        "provider ghost stopped responding during the run (no heartbeat for 1.5 s); "
        "the task failed. It had posted no checkpoint to resume from (no optimizer step "
        "reached a checkpoint yet, or the cell takes none)."
    )
    last = (await quick.events(task["id"]))[-1]
    assert last["data"] == {"state": "failed", "message": failed["error"]}
    assert (await _providers(quick))[provider.id]["state"] == "offline"
    health = await quick.http.get("/v1/health")
    assert health.status_code == 200 and health.json()["providers_online"] == 0
    r = await provider.post_events(lease["id"], _LOSS)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert (await provider.heartbeat()).json() == {"cancel": []}
    assert (await _providers(quick))[provider.id]["state"] == "idle"  # back after it spoke


async def test_heartbeats_and_events_keep_a_lease_alive(quick: Coord) -> None:
    task = await quick.submit()
    provider = await quick.register()
    lease = (await provider.lease()).json()
    for i in range(12):  # 3.6 s, more than twice the 1.5 s ttl
        await asyncio.sleep(0.3)
        if i % 2:
            assert (await provider.heartbeat()).status_code == 200
        else:
            assert (await provider.post_events(lease["id"], _LOSS)).json()["accepted"] == 1
    assert (await quick.task(task["id"]))["state"] == "running"
    assert (await provider.post_result(lease["id"])).json()["state"] == "settled"


async def test_providers_silent_for_three_heartbeats_show_offline(quick: Coord) -> None:
    provider = await quick.register()
    assert (await _providers(quick))[provider.id]["state"] == "idle"
    await asyncio.sleep(1.5)  # 3 x 0.4 s heartbeats
    assert (await _providers(quick))[provider.id]["state"] == "offline"
    await provider.heartbeat()
    assert (await _providers(quick))[provider.id]["state"] == "idle"


async def test_a_coordinator_restart_gives_running_providers_a_ttl_to_check_in(
    make_app: Callable[..., Any], client_for: Callable[[Any], AsyncIterator[Coord]]
) -> None:
    # ttl 5 s: the expiry loop runs every second, and a loaded CI machine must
    # still get the heartbeat in within the grace (a 2 s ttl failed at load 8)
    async for first in client_for(make_app(lease_ttl_seconds=5.0)):
        task = await first.submit()
        provider = await first.register()
        lease = (await provider.lease()).json()
    await asyncio.sleep(5.5)  # the coordinator is down for longer than the ttl
    async for second in client_for(make_app(lease_ttl_seconds=5.0)):
        provider.http = second.http
        await asyncio.sleep(1.5)  # expiry has run at least once; the lease had its grace
        assert (await provider.heartbeat()).json() == {"cancel": []}
        assert (await second.task(task["id"]))["state"] == "running"
        assert (await provider.post_result(lease["id"])).json()["state"] == "settled"
