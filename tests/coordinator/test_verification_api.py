"""Spot verification through the API (free network): who gets which job, and what verdicts do."""

from __future__ import annotations

from typing import Any

import pytest

from gensyn_jupyter.protocol import CheckpointLeaf, Commitment, LeafKind
from gensyn_jupyter.verify import MerkleTree, determinism_class

from .coordinator_helpers import Coord, Provider, sha

pytestmark = pytest.mark.anyio


def _commitment(leaves: int = 10) -> Commitment:
    hashes = [bytes([i]) * 32 for i in range(1, leaves + 1)]
    middle: list[LeafKind] = ["boundary"] * (leaves - 2)
    kinds: list[LeafKind] = ["start", *middle, "end"]
    return Commitment(
        root="0x" + MerkleTree(hashes).root.hex(),
        leaves=[
            CheckpointLeaf(step=4 * i, kind=kind, leaf="0x" + h.hex(), resumable=kind != "end")
            for i, (h, kind) in enumerate(zip(hashes, kinds, strict=True))
        ],
        checkpoint_every=4,
        seed=1,
        determinism=determinism_class("cpu"),
    )


async def _referee(coord: Coord) -> Provider:
    info = {"name": "ref", "device_type": "cpu", "python": "3.11.7", "torch": "2.13.0"}
    r = await coord.http.post("/v1/providers", json={**info, "role": "referee"})
    assert r.status_code == 201, r.text
    body = r.json()
    return Provider(coord.http, body["provider"]["id"], body["token"], "ref")


async def _committed(coord: Coord, runner: Provider) -> dict[str, Any]:
    """A spot task run by ``runner`` and posted with a commitment and its checkpoints."""
    task = await coord.submit(verify="spot")
    r = await runner.lease()
    assert r.status_code == 200 and r.json()["task"]["id"] == task["id"], r.text
    commitment = _commitment()
    checkpoints = []
    for index, leaf in enumerate(commitment.leaves[1:-1], start=1):
        meta = await coord.upload(f"meta {index}".encode())
        tensors = await coord.upload(f"tensors {index}".encode())
        checkpoints.append(
            {"leaf": index, "step": leaf.step, "kind": leaf.kind, "meta": meta, "tensors": tensors}
        )
    posted = await runner.post_result(
        r.json()["id"],
        commitment=commitment.model_dump(mode="json"),
        checkpoints=checkpoints,
        steps=36,
    )
    assert posted.status_code == 200, posted.text
    return dict(posted.json())


async def _verdict(p: Provider, lease_id: str, **verdict: Any) -> Any:
    return await p.http.post(f"/v1/leases/{lease_id}/verdict", json=verdict, headers=p.auth)


async def test_a_spot_task_is_checked_by_another_provider_then_settles(coord: Coord) -> None:
    runner, verifier = await coord.register("runner"), await coord.register("verifier")
    referee = await _referee(coord)
    task = await _committed(coord, runner)
    assert task["state"] == "verifying"
    sampled = task["verification"]["sampled"]
    assert len(sampled) == 1 and 0 <= sampled[0] < 9  # 10% of 9 segments, at least one
    assert (await runner.lease()).status_code == 204  # never its own work
    assert (await referee.lease()).status_code == 204  # no challenge yet
    r = await verifier.lease()
    assert r.status_code == 200, r.text
    lease = r.json()
    job = lease["job"]
    assert job["kind"] == "spot" and job["segment"] == sampled[0]
    assert lease["task"]["id"] == task["id"]
    if job["segment"] > 0:  # the checkpoint the provider uploaded for that leaf
        assert job["checkpoint"]["leaf"] == job["segment"]
    leaf = job["commitment"]["leaves"][job["segment"] + 1]["leaf"]
    stolen = await _verdict(runner, lease["id"], leaf=leaf, matches=True)
    assert stolen.status_code == 403
    ok = await _verdict(verifier, lease["id"], leaf=leaf, matches=True, steps=4)
    assert ok.status_code == 204, ok.text
    again = await _verdict(verifier, lease["id"], leaf=leaf, matches=True)
    assert again.status_code == 409
    done = await coord.task(task["id"])
    assert done["state"] == "settled"
    assert done["verification"]["outcome"] == "verified"
    assert done["verification"]["verifiers"] == {str(sampled[0]): "verifier"}
    messages = [e["data"].get("message", "") for e in await coord.events(task["id"])]
    assert any("every leaf reproduced bit for bit" in m for m in messages), messages


async def test_a_mismatch_goes_to_the_referee_whose_ruling_ends_the_task(coord: Coord) -> None:
    runner, verifier = await coord.register("runner"), await coord.register("verifier")
    referee = await _referee(coord)
    task = await _committed(coord, runner)
    lease = (await verifier.lease()).json()
    wrong = "0x" + "ee" * 32
    r = await _verdict(verifier, lease["id"], leaf=wrong, matches=False, note="differs")
    assert r.status_code == 204, r.text
    disputed = await coord.task(task["id"])
    assert disputed["state"] == "disputed"
    assert (await verifier.lease()).status_code == 204  # the referee's job, not a verifier's
    ruling = await referee.lease()
    assert ruling.status_code == 200 and ruling.json()["job"]["kind"] == "referee"
    r = await _verdict(referee, ruling.json()["id"], leaf=wrong, matches=False)
    assert r.status_code == 204, r.text
    final = await coord.task(task["id"])
    assert final["state"] == "failed"  # a free network has no stake to slash
    assert final["verification"]["outcome"] == "fraud"
    messages = [e["data"].get("message", "") for e in await coord.events(task["id"])]
    assert any("the referee re-executed segment" in m for m in messages), messages


async def test_the_referee_can_reject_a_challenge(coord: Coord) -> None:
    runner, verifier = await coord.register("runner"), await coord.register("verifier")
    referee = await _referee(coord)
    task = await _committed(coord, runner)
    lease = (await verifier.lease()).json()
    await _verdict(verifier, lease["id"], leaf="0x" + "ee" * 32, matches=False)
    ruling = (await referee.lease()).json()
    leaf = ruling["job"]["commitment"]["leaves"][ruling["job"]["segment"] + 1]["leaf"]
    assert (await _verdict(referee, ruling["id"], leaf=leaf, matches=True)).status_code == 204
    final = await coord.task(task["id"])
    assert final["state"] == "settled"
    assert final["verification"]["outcome"] == "rejected_challenge"


async def test_a_spot_task_without_checkpoints_is_refused_up_front(coord: Coord) -> None:
    bundle = (
        b'{"source": "x = 1\\n", "inputs": [], "outputs": [], "checkpoint_every": 0, '
        b'"environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"}}'
    )
    name = await coord.upload(bundle)
    assert name == sha(bundle)
    r = await coord.http.post("/v1/tasks", json={"bundle": name, "verify": "spot"})
    assert r.status_code == 400 and r.json()["field"] == "verify"
    assert "--checkpoint-every 0" in r.json()["detail"]


async def _replicated(coord: Coord) -> tuple[dict[str, Any], Provider, Provider, dict[str, Any]]:
    """A replicate task: the first provider runs it, the second gets the replica job."""
    first, second = await coord.register("first"), await coord.register("second")
    task = await coord.submit(verify="replicate")
    r = await first.lease()
    assert r.status_code == 200 and r.json()["task"]["id"] == task["id"], r.text
    replica = await second.lease()
    assert replica.status_code == 200, replica.text
    assert replica.json()["job"]["kind"] == "replica"
    return r.json(), first, second, replica.json()


def _with_leaf(commitment: Commitment, index: int) -> Commitment:
    hashes = [bytes.fromhex(leaf.leaf[2:]) for leaf in commitment.leaves]
    hashes[index] = b"\xee" * 32
    leaves = [
        leaf.model_copy(update={"leaf": "0x" + h.hex()})
        for leaf, h in zip(commitment.leaves, hashes, strict=True)
    ]
    return commitment.model_copy(
        update={"leaves": leaves, "root": "0x" + MerkleTree(hashes).root.hex()}
    )


async def test_equal_replica_roots_verify_a_task_without_any_replay(coord: Coord) -> None:
    lease, first, second, replica = await _replicated(coord)
    commitment = _commitment().model_dump(mode="json")
    r = await first.post_result(lease["id"], commitment=commitment, steps=36)
    assert r.status_code == 200 and r.json()["state"] == "verifying", r.text
    r = await second.http.post(
        f"/v1/leases/{replica['id']}/replica",
        json={"commitment": commitment, "steps": 36},
        headers=second.auth,
    )
    assert r.status_code == 204, r.text
    final = await coord.task(lease["task"]["id"])
    assert final["state"] == "settled"
    assert final["verification"]["replica_provider"] == "second"
    messages = [e["data"].get("message", "") for e in await coord.events(final["id"])]
    assert any("nothing had to be replayed" in m for m in messages), messages


async def test_different_replica_roots_send_the_first_divergent_segment_to_the_referee(
    coord: Coord,
) -> None:
    lease, first, second, replica = await _replicated(coord)
    referee = await _referee(coord)
    honest = _commitment()
    cheated = _with_leaf(honest, 6)
    await first.post_result(lease["id"], commitment=honest.model_dump(mode="json"), steps=36)
    r = await second.http.post(
        f"/v1/leases/{replica['id']}/replica",
        json={"commitment": cheated.model_dump(mode="json"), "steps": 36},
        headers=second.auth,
    )
    assert r.status_code == 204, r.text
    disputed = await coord.task(lease["task"]["id"])
    assert disputed["state"] == "disputed"
    job = (await referee.lease()).json()
    assert job["job"]["kind"] == "referee" and job["job"]["segment"] == 5  # leaves 5 -> 6
    assert job["job"]["rival"]["root"] == cheated.root
    good = honest.leaves[6].leaf
    r = await _verdict(referee, job["id"], leaf=good, matches=True)
    assert r.status_code == 204, r.text
    final = await coord.task(lease["task"]["id"])
    assert final["state"] == "settled"  # the first run was reproduced: the user gets it
    messages = [e["data"].get("message", "") for e in await coord.events(final["id"])]
    assert any("the replica on second cheated" in m for m in messages), messages
