"""The task handle against a mock coordinator: following, history, future API, apply."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import torch

from gensyn_jupyter.capture import encode_results
from gensyn_jupyter.kernel import CoordinatorClient, GensynError, TaskHandle
from gensyn_jupyter.protocol import sha256_hex


class RecordingView:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_status(self, **kw: Any) -> None:
        self.calls.append(("status", kw["state"]))

    def add_points(self, points: list[dict[str, Any]]) -> None:
        self.calls.append(("points", len(points)))

    def add_log(self, text: str, *, stream: str = "stdout") -> None:
        self.calls.append(("log", text))

    def set_progress(self, **kw: Any) -> None:
        self.calls.append(("progress", kw["steps"]))

    def finish(self, **kw: Any) -> None:
        self.calls.append(("finish", kw["state"]))


def _coordinator(final_state: str = "settled") -> tuple[httpx.MockTransport, torch.nn.Module]:
    trained = torch.nn.Linear(2, 2)
    encoded = encode_results({"model": trained, "n": 7}, ["model", "n"])
    blobs = {sha256_hex(encoded.values_json): encoded.values_json}
    assert encoded.tensors is not None
    blobs[sha256_hex(encoded.tensors)] = encoded.tensors
    events = [
        ("state", {"state": "queued", "message": "queued"}),
        (
            "state",
            {
                "state": "running",
                "message": "running on p1",
                "provider": {"id": "p-1", "name": "p1", "device": "cpu"},
            },
        ),
        ("metrics", {"points": [{"step": s, "name": "loss", "value": 1 / s} for s in range(1, 6)]}),
        ("stdout", {"text": "hello\n"}),
        ("state", {"state": final_state, "message": final_state}),
    ]
    body = "".join(
        f"id: {i}\nevent: {kind}\ndata: "
        + json.dumps({"id": i, "task_id": "t-1", "kind": kind, "data": data, "ts": float(i)})
        + "\n\n"
        for i, (kind, data) in enumerate(events, start=1)
    )
    task = {
        "id": "t-1",
        "spec": {"bundle": "0" * 64},
        "state": final_state,
        "created_at": 0.0,
        "updated_at": 0.0,
        "provider_id": "p-1",
        "provider_name": "p1",
        "error": "ValueError: x" if final_state == "failed" else None,
        "result": {
            "values": sha256_hex(encoded.values_json),
            "tensors": sha256_hex(encoded.tensors),
            "outputs": [o.model_dump() for o in encoded.outputs],
            "duration_s": 1.5,
            "steps": 5,
            "device": "cpu",
        },
    }

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/events"):
            return httpx.Response(
                200, content=body.encode(), headers={"content-type": "text/event-stream"}
            )
        if path.startswith("/v1/blobs/"):
            return httpx.Response(200, content=blobs[path.rsplit("/", 1)[1]])
        if path == "/v1/tasks/t-1":
            return httpx.Response(200, json=task)
        if path == "/v1/tasks/t-1/cancel":
            return httpx.Response(409, json={"detail": "task already ended", "field": None})
        return httpx.Response(404, json={"detail": "nope", "field": None})

    return httpx.MockTransport(handler), trained


def test_follows_the_stream_feeds_the_view_and_applies_in_place() -> None:
    transport, trained = _coordinator()
    client = CoordinatorClient(base_url="http://c", transport=transport)
    view = RecordingView()
    model = torch.nn.Linear(2, 2)
    ns: dict[str, Any] = {"model": model}
    handle = TaskHandle(task_id="t-1", client=client, namespace=ns, view=view, echo=True)
    handle.follow()
    outputs = handle.result(timeout=10)
    assert set(outputs) == {"model", "n"}
    assert handle.done() and handle.status == "settled" and handle.provider == "p1"
    assert handle.metric("loss")[0] == [1, 2, 3, 4, 5] and handle.steps == 5
    assert handle.stdout == "hello\n" and handle.duration == 1.5
    assert ("points", 5) in view.calls and ("status", "running") in view.calls
    assert ns["model"] is model and "n" not in ns  # result() never touches the namespace
    handle.apply()
    assert ns["model"] is model and torch.equal(model.weight, trained.weight) and ns["n"] == 7
    printed: list[tuple[str, str]] = []
    handle.drain_echo(lambda kind, text: printed.append((kind, text)))
    assert ("stdout", "hello\n") in printed and ("gensyn", "running on p1") in printed
    assert not handle.cancel()  # already over: 409 from the coordinator
    assert asyncio.run(_await(handle)) == outputs


async def _await(handle: TaskHandle) -> dict[str, Any]:
    return await handle


def test_a_failed_task_raises_on_result_and_loads_nothing() -> None:
    transport, _ = _coordinator("failed")
    client = CoordinatorClient(base_url="http://c", transport=transport)
    model = torch.nn.Linear(2, 2)
    before = model.weight.clone()
    handle = TaskHandle(task_id="t-1", client=client, namespace={"model": model})
    handle.follow()
    with pytest.raises(GensynError, match="failed"):
        handle.apply()
    assert torch.equal(model.weight, before)
    assert repr(handle).startswith("<gensyn task t-1: failed, on p1")


def test_a_lost_stream_says_the_task_goes_on_and_how_to_find_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(503, json={"detail": "coordinator restarting", "field": None})
        task = {
            "id": "t-1",
            "spec": {"bundle": "0" * 64},
            "state": "running",
            "created_at": 0.0,
            "updated_at": 0.0,
        }
        return httpx.Response(200, json=task)

    client = CoordinatorClient(base_url="http://c", transport=httpx.MockTransport(handler))
    handle = TaskHandle(task_id="t-1", client=client)
    handle.follow()
    with pytest.raises(GensynError, match=r"still running: %gensyn attach t-1"):
        handle.result(timeout=30)
