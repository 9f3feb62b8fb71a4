"""Tasks over the API: submit, validation errors, read, list, cancel, health, OpenAPI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .coordinator_helpers import Coord, bundle_bytes, sha

pytestmark = pytest.mark.anyio


async def test_submit_queues_the_task_and_says_so(coord: Coord) -> None:
    weights = await coord.upload(b"tensor bytes")
    bundle = await coord.upload(bundle_bytes(w=weights))
    task = await coord.submit(bundle=bundle, label="first", gpus=2)
    assert re.fullmatch(r"t-[0-9a-f]{10}", task["id"])
    assert task["state"] == "queued" and task["spec"]["label"] == "first"
    assert task["spec"]["gpus"] == 2 and task["provider_id"] is None
    assert await coord.task(task["id"]) == task
    [event] = await coord.events(task["id"])
    assert event["kind"] == "state"
    assert event["data"] == {"state": "queued", "message": "queued; waiting for a provider"}


async def test_missing_bundle_blob_is_400_naming_it(coord: Coord) -> None:
    missing = sha(b"not uploaded")
    r = await coord.http.post("/v1/tasks", json={"bundle": missing})
    assert r.status_code == 400
    assert r.json() == {
        "detail": f"bundle blob {missing} was not uploaded; PUT /v1/blobs/{missing} first",
        "field": "bundle",
    }


async def test_missing_input_blob_is_400_naming_the_input(coord: Coord) -> None:
    absent = sha(b"the dataset")
    bundle = await coord.upload(bundle_bytes(dataset=absent))
    r = await coord.http.post("/v1/tasks", json={"bundle": bundle})
    assert r.status_code == 400
    assert f"input 'dataset' refers to blob {absent} which was not uploaded" in r.json()["detail"]


async def test_invalid_bundle_is_400_naming_the_field(coord: Coord) -> None:
    doc = json.loads(bundle_bytes(x=sha(b"x")))
    doc["inputs"][0]["kind"] = "pickle"
    bad = await coord.upload(json.dumps(doc).encode())
    r = await coord.http.post("/v1/tasks", json={"bundle": bad})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("bundle is not valid: field 'inputs.0.kind': ")
    not_json = await coord.upload(b"\x80\x04 pickled")
    r = await coord.http.post("/v1/tasks", json={"bundle": not_json})
    assert r.status_code == 400 and r.json()["detail"].startswith("bundle is not valid: ")


async def test_unknown_task_is_404(coord: Coord) -> None:
    for r in (
        await coord.http.get("/v1/tasks/t-0000000000"),
        await coord.http.post("/v1/tasks/t-0000000000/cancel"),
        await coord.http.get("/v1/tasks/t-0000000000/events"),
    ):
        assert r.status_code == 404
        assert r.json()["detail"] == "task t-0000000000 not found"


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"gpus": 0}, "gpus", "field 'gpus': Input should be greater than or equal to 1"),
        ({"device": "tpu"}, "device", "field 'device': Input should be 'auto', 'cpu' or 'cuda'"),
        ({"colour": "red"}, "colour", "field 'colour': Extra inputs are not permitted"),
        ({"bundle": "nope"}, "bundle", "field 'bundle': String should match pattern"),
    ],
)
async def test_malformed_spec_is_422_naming_the_field(
    coord: Coord, body: dict[str, Any], field: str, detail: str
) -> None:
    spec = {"bundle": sha(b"b"), **body}
    r = await coord.http.post("/v1/tasks", json=spec)
    assert r.status_code == 422
    assert r.json()["field"] == field
    assert r.json()["detail"].startswith(detail)


async def test_verify_modes_are_accepted_and_carry_their_verification(coord: Coord) -> None:
    bundle = await coord.upload(bundle_bytes())
    for mode in ("spot", "replicate"):
        r = await coord.http.post("/v1/tasks", json={"bundle": bundle, "verify": mode})
        assert r.status_code == 201 and r.json()["verification"]["mode"] == mode, r.text
    r = await coord.http.post("/v1/tasks", json={"bundle": bundle, "verify": "trust-me"})
    assert r.status_code == 422 and r.json()["field"] == "verify"


async def test_bodies_that_are_not_json_are_refused_clearly(coord: Coord) -> None:
    post = coord.http.post
    r = await post(
        "/v1/tasks", content=b'{"bundle": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = await post("/v1/tasks", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("request body")
    r = await post("/v1/tasks", content=b"bundle=x", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "must be JSON" in r.json()["detail"]
    r = await post("/v1/tasks")
    assert r.status_code == 422 and "missing" in r.json()["detail"]


async def test_json_bodies_over_the_limit_are_413(
    make_app: Callable[..., Any], client_for: Callable[[Any], AsyncIterator[Coord]]
) -> None:
    async for c in client_for(make_app(max_json_bytes=2000)):
        big = {"bundle": sha(b"b"), "label": "x" * 3000}
        r = await c.http.post("/v1/tasks", json=big)
        assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            yield b'{"label": "'
            for _ in range(30):
                yield b"y" * 100
            yield b'"}'

        r = await c.http.post(
            "/v1/tasks", content=chunked(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        bundle = await c.upload(bundle_bytes())
        assert (await c.http.post("/v1/tasks", json={"bundle": bundle})).status_code == 201


async def test_list_is_newest_first_and_filters(coord: Coord) -> None:
    first = await coord.submit(label="a")
    second = await coord.submit(label="b")
    await coord.http.post(f"/v1/tasks/{first['id']}/cancel")
    listed = (await coord.http.get("/v1/tasks")).json()
    assert [t["id"] for t in listed] == [second["id"], first["id"]]
    queued = (await coord.http.get("/v1/tasks", params={"state": "queued"})).json()
    assert [t["id"] for t in queued] == [second["id"]]
    assert len((await coord.http.get("/v1/tasks", params={"limit": 1})).json()) == 1
    r = await coord.http.get("/v1/tasks", params={"state": "sleeping"})
    assert r.status_code == 422 and r.json()["field"] == "state"


async def test_cancel_a_queued_task(coord: Coord) -> None:
    task = await coord.submit()
    r = await coord.http.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = await coord.http.post(f"/v1/tasks/{task['id']}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    events = await coord.events(task["id"])
    assert [e["data"]["state"] for e in events] == ["queued", "cancelled"]
    assert events[-1]["data"]["message"] == "cancelled by the owner"


async def test_cancel_after_the_task_ended_otherwise_is_409(coord: Coord) -> None:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    assert (await provider.post_result(lease["id"])).json()["state"] == "settled"
    r = await coord.http.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 409 and "already ended (settled)" in r.json()["detail"]


async def test_unknown_routes_and_methods_answer_json(coord: Coord) -> None:
    r = await coord.http.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {
        "detail": "not found: GET /v1/nothing-here",
        "field": None,
    }
    r = await coord.http.delete("/v1/tasks")
    assert r.status_code == 405 and "DELETE" in r.json()["detail"]


async def test_health(coord: Coord) -> None:
    await coord.submit()
    await coord.register()
    r = await coord.http.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["tasks"] == 1 and body["providers_online"] == 1
    assert isinstance(body["version"], str)


async def test_openapi_describes_routes_with_protocol_models(coord: Coord) -> None:
    doc = (await coord.http.get("/openapi.json")).json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/health", "get"),
        ("/v1/blobs/{sha256}", "head"),
        ("/v1/blobs/{sha256}", "put"),
        ("/v1/blobs/{sha256}", "get"),
        ("/v1/tasks", "post"),
        ("/v1/tasks", "get"),
        ("/v1/tasks/{task_id}", "get"),
        ("/v1/tasks/{task_id}/cancel", "post"),
        ("/v1/tasks/{task_id}/events", "get"),
        ("/v1/providers", "post"),
        ("/v1/providers", "get"),
        ("/v1/providers/{provider_id}/heartbeat", "post"),
        ("/v1/providers/{provider_id}/lease", "post"),
        ("/v1/leases/{lease_id}/events", "post"),
        ("/v1/leases/{lease_id}/result", "post"),
    ]:
        assert method in paths[path], (path, method)
    submit = paths["/v1/tasks"]["post"]
    body_ref = submit["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.endswith("/TaskSpec")
    assert submit["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Task"
    )
    assert submit["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    result = paths["/v1/leases/{lease_id}/result"]["post"]
    assert result["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ResultManifest"
    )
    assert {"401", "403", "409"} <= set(result["responses"])
    for name in ("Lease", "Heartbeat", "ProviderRegistration", "EventsPost", "Event", "Provider"):
        assert name in doc["components"]["schemas"], name
