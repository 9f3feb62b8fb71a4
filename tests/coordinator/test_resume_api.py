"""Checkpoints posted during a run; a lost provider's task resumes on another from the latest."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from .coordinator_helpers import Coord, Provider

pytestmark = pytest.mark.anyio


def _leaf(step: int, kind: str = "boundary", fill: str = "22") -> dict[str, Any]:
    return {"step": step, "kind": kind, "leaf": "0x" + fill * 32, "resumable": kind != "hook"}


async def _post(
    coord: Coord, provider: Provider, lease_id: str, step: int, **change: Any
) -> tuple[int, str]:
    meta = await coord.upload(f"meta of step {step}".encode())
    tensors = await coord.upload(f"tensors of step {step}".encode())
    body: dict[str, Any] = {
        "leaf": 1,
        "step": step,
        "leaves": [_leaf(0, "start", "11"), _leaf(step)],
        "dues": [0, step],
        "every": 5,
        "next_due": step + 5,
        "blobs": [{"leaf": 1, "step": step, "kind": "boundary", "meta": meta, "tensors": tensors}],
        **change,
    }
    r = await provider.http.post(
        f"/v1/leases/{lease_id}/checkpoint", json=body, headers=provider.auth
    )
    return r.status_code, r.text


async def _wait_state(coord: Coord, task_id: str, state: str, within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await coord.task(task_id))["state"] == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never became {state} within {within} s")


async def test_a_silent_provider_s_task_resumes_on_the_next_from_its_latest_checkpoint(
    quick: Coord,
) -> None:
    task = await quick.submit()
    lost = await quick.register("lost")
    lease = (await lost.lease()).json()
    assert lease["resume"] is None
    assert await _post(quick, lost, lease["id"], 5) == (204, "")
    assert await _post(quick, lost, lease["id"], 10) == (204, "")
    assert (await quick.task(task["id"]))["checkpoint_step"] == 10
    # the provider goes silent: its lease expires and the task goes back to the queue
    await _wait_state(quick, task["id"], "queued")
    queued = await quick.task(task["id"])
    assert queued["attempt"] == 2 and queued["error"] is None
    nxt = await quick.register("next")
    resumed = (await nxt.lease()).json()
    assert resumed["task"]["id"] == task["id"]
    assert resumed["resume"]["step"] == 10 and resumed["resume"]["leaf"] == 1
    states = [e["data"] for e in await quick.events(task["id"]) if e["kind"] == "state"]
    assert [s["state"] for s in states] == ["queued", "running", "queued", "running"]
    assert (
        "provider lost lost (no heartbeat for 1.5 s); resuming from step 10"
        in (states[2]["message"])
    )
    assert states[3]["message"].startswith(
        "provider lost lost, resumed from step 10 on provider next"
    )
    # the lost provider, back, may not post on its old lease
    code, text = await _post(quick, lost, lease["id"], 15)
    assert code == 409 and "no longer held" in text
    r = await nxt.post_result(resumed["id"])
    assert r.status_code == 200 and r.json()["state"] == "settled"


async def test_only_the_lease_s_provider_posts_its_checkpoints(coord: Coord) -> None:
    await coord.submit()
    owner = await coord.register("owner")
    other = await coord.register("other")
    lease = (await owner.lease()).json()
    code, text = await _post(coord, other, lease["id"], 5)
    assert code == 403 and "another provider" in text
    code, text = await _post(coord, owner, "l-unknown", 5)
    assert code == 404
    bad = Provider(owner.http, owner.id, "not-a-token", "owner")
    code, _ = await _post(coord, bad, lease["id"], 5)
    assert code == 401


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"dues": [0]}, "send one due step per leaf"),
        ({"leaf": 2}, "must be the last of the 2 leaves"),
        ({"leaves": [_leaf(0, "start", "11"), _leaf(5, "hook")]}, "only a resumable boundary"),
        ({"blobs": []}, "'blobs' must name the files of leaf 1"),
    ],
)
async def test_a_malformed_checkpoint_post_is_refused_with_the_reason(
    coord: Coord, change: dict[str, Any], expected: str
) -> None:
    await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    code, text = await _post(coord, provider, lease["id"], 5, **change)
    assert code == 422 and expected in text, text


async def test_a_checkpoint_naming_a_missing_blob_is_refused(coord: Coord) -> None:
    await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    missing = "ab" * 32
    blobs = [{"leaf": 1, "step": 5, "kind": "boundary", "meta": missing, "tensors": missing}]
    code, text = await _post(coord, provider, lease["id"], 5, blobs=blobs)
    assert code == 400 and f"PUT /v1/blobs/{missing} first" in text


async def test_without_a_checkpoint_a_silent_provider_s_task_fails_and_says_why(
    quick: Coord,
) -> None:
    task = await quick.submit()
    provider = await quick.register("ghost")
    (await provider.lease()).json()
    await _wait_state(quick, task["id"], "failed")
    failed = await quick.task(task["id"])
    assert "It had posted no checkpoint to resume from" in failed["error"]
    assert failed["attempt"] == 1
