"""Providers and leases over the API: the whole cycle, auth, validation, matching, races."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from gensyn_jupyter.protocol import MetricPoint

from .coordinator_helpers import Coord, Provider

pytestmark = pytest.mark.anyio

_LOSS = {"kind": "metrics", "data": {"points": [{"step": 1, "name": "loss", "value": 0.25}]}}


async def _providers(coord: Coord) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in (await coord.http.get("/v1/providers")).json()}


async def test_full_cycle(coord: Coord) -> None:
    tensors = await coord.upload(b"safetensors bytes")
    task = await coord.submit(gpus=1)
    provider = await coord.register("alice-box")
    assert (await _providers(coord))[provider.id]["state"] == "idle"

    r = await provider.lease(wait=1)
    assert r.status_code == 200
    lease = r.json()
    assert lease["id"].startswith("l-") and lease["provider_id"] == provider.id
    assert lease["task"]["id"] == task["id"] and lease["task"]["state"] == "running"
    assert lease["expires_at"] > time.time() and lease["ttl_seconds"] == 15.0
    running = await coord.task(task["id"])
    assert running["provider_name"] == "alice-box" and running["started_at"] is not None
    assert (await _providers(coord))[provider.id]["state"] == "busy"

    assert (await provider.heartbeat()).json() == {"cancel": []}
    posted = await provider.post_events(
        lease["id"],
        _LOSS,
        {"kind": "stdout", "data": {"text": "epoch 1\n"}},
        {"kind": "log", "data": {"message": "moved the model to cpu"}},
    )
    assert posted.json() == {"accepted": 3, "cancelled": False}

    done = await provider.post_result(lease["id"], tensors=tensors, steps=10, duration_s=0.1)
    assert done.status_code == 200
    final = done.json()
    assert final["state"] == "settled" and final["result"]["tensors"] == tensors
    assert final["gpu_seconds"] == pytest.approx(final["finished_at"] - final["started_at"])
    assert await coord.task(task["id"]) == final

    events = await coord.events(task["id"])
    assert [e["kind"] for e in events] == ["state", "state", "metrics", "stdout", "log"] + [
        "state"
    ] * 3
    states = [e["data"] for e in events if e["kind"] == "state"]
    assert [s["state"] for s in states] == ["queued", "running", "committed", "verified", "settled"]
    assert states[1]["message"] == "running on provider alice-box (cpu, 2 cores)"
    assert states[1]["provider"] == {
        "id": provider.id,
        "name": "alice-box",
        "device": "cpu, 2 cores",
    }
    assert states[2]["message"] == "result committed by alice-box"
    assert states[3]["message"] == "verification: none (result trusted, not checked)"
    assert states[4]["message"] == "settled: nothing to pay on a network without escrow"
    assert events[2]["data"] == {"points": [{"step": 1, "name": "loss", "value": 0.25}]}
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    listed = (await _providers(coord))[provider.id]
    assert listed["state"] == "idle" and listed["tasks_done"] == 1
    r = await provider.post_events(lease["id"], _LOSS)
    assert r.status_code == 409 and "no longer held" in r.json()["detail"]


async def test_gpu_seconds_count_every_gpu(coord: Coord) -> None:
    task = await coord.submit(gpus=2)
    provider = await coord.register("quad", "cuda", gpus=4)
    lease = (await provider.lease()).json()
    assert lease["task"]["id"] == task["id"]
    await asyncio.sleep(0.1)
    final = (await provider.post_result(lease["id"])).json()
    assert final["gpu_seconds"] == pytest.approx(2 * (final["finished_at"] - final["started_at"]))
    assert final["gpu_seconds"] >= 0.2


async def test_a_cell_error_fails_the_task_with_the_remote_error(coord: Coord) -> None:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    error = {
        "type": "ValueError",
        "message": "boom",
        "cell_line": 3,
        "frames": [{"filename": "<cell>", "lineno": 3, "name": "<module>", "in_cell": True}],
    }
    final = (await provider.post_result(lease["id"], error=error)).json()
    assert final["state"] == "failed" and final["error"] == "ValueError: boom"
    last = (await coord.events(task["id"]))[-1]
    assert last["data"]["state"] == "failed" and last["data"]["error"]["cell_line"] == 3
    assert last["data"]["error"]["type"] == "ValueError"
    assert (await _providers(coord))[provider.id]["state"] == "idle"


async def test_result_naming_a_missing_blob_is_400_and_keeps_the_lease(coord: Coord) -> None:
    await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    missing = "ab" * 32
    r = await provider.post_result(lease["id"], values=missing)
    assert r.status_code == 400 and r.json()["field"] == "values"
    assert missing in r.json()["detail"]
    assert (await provider.post_result(lease["id"])).json()["state"] == "settled"


async def test_tokens_are_checked(coord: Coord) -> None:
    await coord.submit()
    alice = await coord.register("alice")
    bob = await coord.register("bob")
    lease = (await alice.lease()).json()
    http = coord.http
    nobody = {"Authorization": "Bearer not-a-token"}
    calls = [
        ("post", f"/v1/providers/{alice.id}/heartbeat", None),
        ("post", f"/v1/providers/{alice.id}/lease", None),
        ("post", f"/v1/leases/{lease['id']}/events", {"events": []}),
        ("post", f"/v1/leases/{lease['id']}/result", {}),
    ]
    for method, url, body in calls:
        for headers in ({}, nobody, {"Authorization": "Basic abc"}):
            r = await http.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (url, headers, r.text)
            assert "token" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
        r = await http.request(method, url, json=body, headers=bob.auth)
        assert r.status_code == 403, (url, r.text)
    r = await http.post("/v1/providers/p-0000000000/heartbeat", headers=alice.auth)
    assert r.status_code == 404
    r = await http.post("/v1/leases/l-0000000000/events", json={"events": []}, headers=alice.auth)
    assert r.status_code == 404
    assert (await alice.post_events(lease["id"], _LOSS)).json()["accepted"] == 1


async def test_cuda_tasks_go_only_to_cuda_providers(coord: Coord) -> None:
    task = await coord.submit(device="cuda")
    cpu = await coord.register("laptop", "cpu")
    assert (await cpu.lease(wait=0.2)).status_code == 204
    gpu = await coord.register("rig", "cuda", gpus=1)
    r = await gpu.lease()
    assert r.status_code == 200 and r.json()["task"]["id"] == task["id"]
    running = [e for e in await coord.events(task["id"]) if e["data"].get("state") == "running"]
    assert running[0]["data"]["message"] == "running on provider rig (cuda: NVIDIA H200)"


async def test_gpu_count_is_honoured_and_fifo_skips_what_does_not_fit(coord: Coord) -> None:
    big = await coord.submit(gpus=2)
    small = await coord.submit(gpus=1)
    one = await coord.register("one", "cuda", gpus=1)
    assert (await one.lease()).json()["task"]["id"] == small["id"]
    two = await coord.register("two", "cuda", gpus=2)
    assert (await two.lease()).json()["task"]["id"] == big["id"]


async def test_leases_are_first_in_first_out(coord: Coord) -> None:
    tasks = [await coord.submit(label=str(i)) for i in range(3)]
    provider = await coord.register()
    got = []
    for _ in tasks:
        lease = (await provider.lease()).json()
        got.append(lease["task"]["id"])
        await provider.post_result(lease["id"])
    assert got == [t["id"] for t in tasks]


async def test_long_poll_wakes_when_a_task_arrives(coord: Coord) -> None:
    provider = await coord.register()
    start = time.monotonic()
    poll = asyncio.create_task(provider.lease(wait=20))
    await asyncio.sleep(0.2)
    task = await coord.submit()
    r = await asyncio.wait_for(poll, 10)
    assert r.status_code == 200 and r.json()["task"]["id"] == task["id"]
    assert time.monotonic() - start < 5


async def test_long_poll_times_out_with_204_and_limits_wait(coord: Coord) -> None:
    provider = await coord.register()
    start = time.monotonic()
    assert (await provider.lease(wait=0.3)).status_code == 204
    assert 0.25 < time.monotonic() - start < 3
    r = await provider.lease(wait=61)
    assert r.status_code == 422 and r.json()["field"] == "wait"


async def test_two_providers_polling_at_once_never_share_a_task(coord: Coord) -> None:
    a, b = await coord.register("a"), await coord.register("b")
    polls = [asyncio.create_task(p.lease(wait=1)) for p in (a, b)]
    await asyncio.sleep(0.2)
    task = await coord.submit()
    results = await asyncio.wait_for(asyncio.gather(*polls), 10)
    assert sorted(r.status_code for r in results) == [200, 204]
    [won] = [r.json() for r in results if r.status_code == 200]
    assert won["task"]["id"] == task["id"]


async def test_many_providers_racing_take_each_task_exactly_once(coord: Coord) -> None:
    tasks = {(await coord.submit(label=str(i)))["id"] for i in range(24)}
    providers = [await coord.register(f"p{i}") for i in range(6)]
    taken: list[str] = []

    async def work(p: Provider) -> None:
        while True:
            r = await p.lease(wait=0)
            if r.status_code == 204:
                return
            lease = r.json()
            taken.append(lease["task"]["id"])
            assert (await p.post_result(lease["id"])).status_code == 200

    await asyncio.wait_for(asyncio.gather(*(work(p) for p in providers)), 30)
    assert sorted(taken) == sorted(tasks)


async def test_provider_events_are_validated(coord: Coord) -> None:
    await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()["id"]
    r = await provider.post_events(lease, {"kind": "state", "data": {"state": "settled"}})
    assert r.status_code == 422 and r.json()["field"] == "events.0.kind"
    assert "coordinator only" in r.json()["detail"]
    bad = {"kind": "metrics", "data": {"points": [{"step": -1, "name": "loss", "value": 1}]}}
    r = await provider.post_events(lease, _LOSS, bad)
    assert r.status_code == 422 and r.json()["field"] == "events.1.data.points.0.step"
    r = await provider.post_events(lease, {"kind": "metrics", "data": {}})
    assert r.status_code == 422 and r.json()["field"] == "events.0.data.points"
    r = await provider.post_events(lease, {"kind": "stdout", "data": {"txt": "hi"}})
    assert r.status_code == 422 and r.json()["field"] == "events.0.data.text"
    r = await provider.post_events(lease, {"kind": "shout", "data": {}})
    assert r.status_code == 422 and r.json()["field"] == "events.0.kind"


async def test_registration_answers_timings_and_refuses_bad_info(coord: Coord) -> None:
    r = await coord.http.post(
        "/v1/providers", json={"name": "x", "device_type": "cpu", "python": "3", "torch": "2"}
    )
    body = r.json()
    assert r.status_code == 201 and body["provider"]["id"].startswith("p-")
    assert body["heartbeat_seconds"] == 2.0 and body["lease_ttl_seconds"] == 15.0
    assert len(body["token"]) >= 32
    r = await coord.http.post(
        "/v1/providers", json={"name": "x", "device_type": "tpu", "python": "3", "torch": "2"}
    )
    assert r.status_code == 422 and r.json()["field"] == "device_type"


async def test_a_nan_loss_reaches_every_client(coord: Coord) -> None:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()["id"]
    raw = (
        b'{"events": [{"kind": "metrics", "data": {"points": ['
        b'{"step": 1, "name": "loss", "value": NaN}, {"step": 2, "name": "loss", "value": Infinity}'
        b']}}, {"kind": "log", "data": {"message": "m", "extra": -Infinity}}]}'
    )
    r = await coord.http.post(
        f"/v1/leases/{lease}/events",
        content=raw,
        headers={**provider.auth, "content-type": "application/json"},
    )
    assert r.json()["accepted"] == 2
    metrics, log = (await coord.events(task["id"]))[-2:]
    assert [p["value"] for p in metrics["data"]["points"]] == ["NaN", "Infinity"]
    assert math.isnan(MetricPoint.model_validate(metrics["data"]["points"][0]).value)
    assert log["data"]["extra"] == "-Infinity"
    nan_result = b'{"duration_s": NaN}'
    r = await coord.http.post(
        f"/v1/leases/{lease}/result",
        content=nan_result,
        headers={**provider.auth, "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["field"] == "duration_s"
    assert (await provider.post_result(lease)).json()["state"] == "settled"


async def test_a_multi_device_task_goes_only_to_a_provider_with_that_many_devices(
    coord: Coord,
) -> None:
    cuda_task = await coord.submit(gpus=2, device="cuda")
    cpu_task = await coord.submit(gpus=3, device="cpu")
    one_gpu = await coord.register("one", "cuda", gpus=1)
    assert (await one_gpu.lease()).status_code == 204  # 2 GPUs asked, 1 here; 2 cores only
    two_cores = await coord.register("cores")  # cpu_count 2: 2 gloo ranks, not 3
    assert (await two_cores.lease()).status_code == 204
    two_gpus = await coord.register("two", "cuda", gpus=2)
    assert (await two_gpus.lease()).json()["task"]["id"] == cuda_task["id"]
    assert (await coord.task(cpu_task["id"]))["state"] == "queued"
