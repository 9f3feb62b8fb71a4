"""Who may read a blob: GET and HEAD ``/v1/blobs/{sha256}`` with every wrong credential.

An owned task on a free network (sessions made by hand: a free network has
no sign-in) goes through the real flow: its owner uploads the bundle and
an input with its session and submits; a provider leases it, uploads
checkpoints and results and posts them; a verifier takes the spot job. Then
every caller asks for every blob. What may not be read answers exactly as a
blob that is not stored (404), so a hash reveals nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gensyn_jupyter.coordinator._db import SessionRow
from gensyn_jupyter.coordinator._ids import hash_token

from .conftest import AppFactory
from .coordinator_helpers import Coord, Provider, bundle_bytes, sha
from .test_live_server import server  # noqa: F401 - the live coordinator fixture
from .test_verification_api import _commitment

pytestmark = pytest.mark.anyio

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


@dataclass
class World:
    coord: Coord
    ctx: Any

    def session(self, address: str) -> dict[str, str]:
        """A live session of ``address`` (made in the database: a free network has no sign-in)."""
        token = f"session-of-{address}"
        with self.ctx.db.write() as db:
            db.add(
                SessionRow(
                    token_hash=hash_token(token), address=address, expires_at=time.time() + 3600
                )
            )
        return {"Authorization": f"Bearer {token}"}

    async def put(self, data: bytes, headers: dict[str, str] | None = None) -> str:
        r = await self.coord.http.put(f"/v1/blobs/{sha(data)}", content=data, headers=headers)
        assert r.status_code in (200, 201), r.text
        return sha(data)

    async def get(self, name: str, headers: dict[str, str] | None) -> httpx.Response:
        return await self.coord.http.get(f"/v1/blobs/{name}", headers=headers)

    async def head(self, name: str, headers: dict[str, str] | None) -> int:
        return (await self.coord.http.head(f"/v1/blobs/{name}", headers=headers)).status_code


@pytest.fixture
async def world(make_app: AppFactory) -> AsyncIterator[World]:
    app = make_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://coordinator", timeout=30
        ) as http,
    ):
        yield World(Coord(http), app.state.coordinator)


async def _owned_run(w: World, owner: dict[str, str], runner: Provider, tag: str) -> dict[str, Any]:
    """A spot task of ``owner`` run and committed by ``runner``: its blobs by role."""
    data = await w.put(f"dataset of {tag}".encode(), owner)
    bundle = await w.put(bundle_bytes(dataset=data), owner)
    made = await w.coord.http.post(
        "/v1/tasks", json={"bundle": bundle, "verify": "spot"}, headers=owner
    )
    assert made.status_code == 201, made.text
    lease = (await runner.lease()).json()
    assert lease["task"]["id"] == made.json()["id"]
    commitment = _commitment()
    checkpoints = []
    for index, leaf in enumerate(commitment.leaves[1:-1], start=1):
        meta = await w.put(f"{tag} meta {index}".encode(), runner.auth)
        tensors = await w.put(f"{tag} tensors {index}".encode(), runner.auth)
        checkpoints.append(
            {"leaf": index, "step": leaf.step, "kind": leaf.kind, "meta": meta, "tensors": tensors}
        )
    values = await w.put(f"{tag} values".encode(), runner.auth)
    posted = await runner.post_result(
        lease["id"],
        values=values,
        commitment=commitment.model_dump(mode="json"),
        checkpoints=checkpoints,
        steps=36,
    )
    assert posted.status_code == 200, posted.text
    return {
        "task": made.json()["id"],
        "bundle": bundle,
        "input": data,
        "values": values,
        "checkpoints": {c["leaf"]: (c["meta"], c["tensors"]) for c in checkpoints},
    }


async def _verify_job(verifier: Provider, task_id: str) -> dict[str, Any]:
    lease = (await verifier.lease()).json()
    assert lease["task"]["id"] == task_id and lease["job"]["kind"] == "spot", lease
    return dict(lease["job"])


async def test_each_blob_is_read_only_by_those_the_task_gives_it_to(world: World) -> None:
    w = world
    alice, bob = w.session(ALICE), w.session(BOB)
    runner = await w.coord.register("runner")
    verifier, stranger = await w.coord.register("verifier"), await w.coord.register("idle")
    run = await _owned_run(w, alice, runner, "alice")
    job = await _verify_job(verifier, run["task"])
    segment = job["segment"]
    assigned = run["checkpoints"].get(segment, ())  # leaf 0 (the start) has no blobs
    other = next(pair for leaf, pair in run["checkpoints"].items() if leaf != segment)
    inputs = [run["bundle"], run["input"]]
    everything = [*inputs, run["values"], *assigned, *other]
    allowed: dict[str, tuple[dict[str, str] | None, list[str]]] = {
        "the owner": (alice, everything),
        "the provider that ran it": (runner.auth, everything),
        "its verifier": (verifier.auth, [*inputs, *assigned]),
        "another account": (bob, []),
        "a provider without a lease": (stranger.auth, []),
        "no credentials": (None, []),
    }
    absent = sha(b"never uploaded")
    nothing = (await w.get(absent, bob)).json()["detail"]
    for who, (headers, readable) in allowed.items():
        for name in everything:
            reply = await w.get(name, headers)
            if name in readable:
                assert reply.status_code == 200, (who, name, reply.text)
                assert sha(reply.content) == name
                assert await w.head(name, headers) == 200, (who, name)
                continue
            assert reply.status_code == 404, (who, name, reply.text)
            assert await w.head(name, headers) == 404, (who, name)
            detail = reply.json()["detail"]  # the same answer as a blob never stored
            assert detail == nothing.replace(absent, name), (who, detail)
            assert "Authorization: Bearer" in detail
    forged = {"Authorization": "Bearer forged"}
    unknown = await w.get(run["values"], forged)
    assert unknown.status_code == 401
    assert "neither a live session" in unknown.json()["detail"]
    assert await w.head(run["values"], forged) == 401
    put = await w.coord.http.put(f"/v1/blobs/{sha(b'x')}", content=b"x", headers=forged)
    assert put.status_code == 401  # an upload is never silently anonymous (public)


async def test_a_verifier_reads_only_the_task_it_checks(world: World) -> None:
    w = world
    alice, bob = w.session(ALICE), w.session(BOB)
    runner, second = await w.coord.register("runner"), await w.coord.register("second")
    verifier, verifier2 = await w.coord.register("v1"), await w.coord.register("v2")
    first = await _owned_run(w, alice, runner, "alice")
    await _verify_job(verifier, first["task"])
    later = await _owned_run(w, bob, second, "bob")
    await _verify_job(verifier2, later["task"])
    for who, mine, theirs in ((verifier, first, later), (verifier2, later, first)):
        for name in (theirs["bundle"], theirs["input"], theirs["values"]):
            assert (await w.get(name, who.auth)).status_code == 404, (who.name, name)
        assert (await w.get(mine["bundle"], who.auth)).status_code == 200
    # the runner of one task is a stranger to the other
    assert (await w.get(later["input"], runner.auth)).status_code == 404
    assert (await w.get(first["values"], second.auth)).status_code == 404


async def test_holding_the_bytes_is_proof_enough_and_a_task_cannot_launder_a_hash(
    world: World,
) -> None:
    w = world
    alice, bob = w.session(ALICE), w.session(BOB)
    secret = b"alice's private data set"
    name = await w.put(secret, alice)
    # bob's dedupe HEAD says nothing; he uploads the bytes, which proves he has them
    assert await w.head(name, bob) == 404
    assert (await w.get(name, bob)).status_code == 404
    # naming it in a bundle does not help: the task is refused as for a blob never stored
    bundle = await w.put(bundle_bytes(dataset=name), bob)
    refused = await w.coord.http.post("/v1/tasks", json={"bundle": bundle}, headers=bob)
    assert refused.status_code == 400, refused.text
    assert f"refers to blob {name} which was not uploaded" in refused.json()["detail"]
    theirs = await w.coord.http.post("/v1/tasks", json={"bundle": name}, headers=bob)
    assert theirs.status_code == 400
    assert (
        theirs.json()["detail"]
        == f"bundle blob {name} was not uploaded; PUT /v1/blobs/{name} first"
    )
    await w.put(secret, bob)
    assert (await w.get(name, bob)).content == secret
    made = await w.coord.http.post("/v1/tasks", json={"bundle": bundle}, headers=bob)
    assert made.status_code == 201, made.text
    # a provider cannot attach a blob it never held to a result either
    runner = await w.coord.register("runner")
    lease = (await runner.lease()).json()
    foreign = await w.put(b"alice's weights", alice)
    posted = await runner.post_result(lease["id"], values=foreign)
    assert posted.status_code == 200, posted.text
    assert (await w.get(foreign, bob)).status_code == 404


async def test_a_free_network_keeps_working_without_any_credentials(world: World) -> None:
    w = world
    # an anonymous upload is public (nobody to scope it to); its task has no owner
    task = await w.coord.submit()
    runner = await w.coord.register("runner")
    lease = (await runner.lease()).json()
    values = await w.put(b"result of a free task", runner.auth)
    assert (await w.get(values, None)).status_code == 404  # not part of any task yet
    assert (await runner.post_result(lease["id"], values=values)).status_code == 200
    assert (await w.get(values, None)).content == b"result of a free task"
    assert (await w.coord.task(task["id"]))["result"]["values"] == values
    # a provider's upload no task uses stays its own
    private = await w.put(b"provider scratch", runner.auth)
    assert await w.head(private, None) == 404
    assert await w.head(private, runner.auth) == 200


def test_migrate_indexes_the_blobs_of_tasks_stored_before_the_index(tmp_path: Any) -> None:
    from sqlalchemy import select, text

    from gensyn_jupyter.coordinator import head_revision, migrate
    from gensyn_jupyter.coordinator._db import Database, TaskBlobRow, TaskRow

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    bundle, values, meta, tensors = (sha(n.encode()) for n in ("b", "v", "m", "t"))
    result = {
        "values": values,
        "checkpoints": [
            {"leaf": 1, "step": 4, "kind": "boundary", "meta": meta, "tensors": tensors}
        ],
    }
    db = Database(url)
    with db.write() as session:
        session.add(
            TaskRow(
                id="t-old",
                state="verified",
                device="cpu",
                gpus=0,
                spec=f'{{"bundle": "{bundle}"}}',
                created_at=1.0,
                updated_at=1.0,
                account=ALICE,
                result=json.dumps(result),
            )
        )
    with db.engine.begin() as conn:  # as a version without the index left it
        conn.execute(text("DROP TABLE task_blobs"))
        conn.execute(text("DROP TABLE blob_uploaders"))
    db.close()
    assert migrate(url) == (None, head_revision())
    db = Database(url)
    try:
        with db.read() as session:
            rows = session.execute(select(TaskBlobRow.sha256, TaskBlobRow.role)).all()
    finally:
        db.close()
    assert dict(rows) == {
        bundle: "bundle",
        values: "result",
        meta: "result",
        tensors: "result",
    }


def test_over_real_http_the_clients_blob_calls_follow_the_rules(
    server: str,  # noqa: F811
) -> None:
    """A ``serve`` process, and ``BlobClient``: the calls the kernel and the provider make."""
    from gensyn_jupyter.protocol import BlobClient, CoordinatorError

    with (
        httpx.Client(base_url=server, timeout=30) as anonymous,
        httpx.Client(base_url=server, timeout=30) as provider,
    ):
        info = {"name": "live-blobs", "device_type": "cpu", "python": "3.11", "torch": "2"}
        registered = provider.post("/v1/providers", json=info)
        assert registered.status_code == 201, registered.text
        provider.headers["Authorization"] = f"Bearer {registered.json()['token']}"
        mine, nobody = BlobClient(client=provider), BlobClient(client=anonymous)
        scratch = b"a provider's own upload, part of no task"
        assert mine.upload_missing({sha(scratch): scratch}) == len(scratch)
        assert mine.upload_missing({sha(scratch): scratch}) == 0  # its HEAD dedupes
        assert mine.get_blob(sha(scratch)) == scratch
        assert nobody.has_blob(sha(scratch)) is False
        with pytest.raises(CoordinatorError) as refused:
            nobody.get_blob(sha(scratch))
        assert refused.value.status == 404
        assert "not stored, or not readable with these credentials" in refused.value.detail
        # an upload without credentials is public: the free network's kernel
        shared = b"an anonymous upload"
        assert nobody.upload_missing({sha(shared): shared}) == len(shared)
        assert mine.get_blob(sha(shared)) == shared
