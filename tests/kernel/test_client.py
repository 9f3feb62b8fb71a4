from __future__ import annotations

import json

import httpx
import pytest

from gensyn_jupyter.kernel import CoordinatorClient
from gensyn_jupyter.protocol import CoordinatorError


def _sse(events: list[tuple[int, str, dict[str, object]]]) -> bytes:
    chunks = []
    for event_id, kind, data in events:
        body = {"id": event_id, "task_id": "t-1", "kind": kind, "data": data, "ts": 0.0}
        chunks.append(f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n")
    return "".join(chunks).encode()


def test_events_resume_after_a_dropped_stream_without_duplicates() -> None:
    seen_last_ids: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("Last-Event-ID", "0")
        seen_last_ids.append(last)
        if last == "0":  # first connection drops after two events
            body = _sse([(1, "state", {"state": "queued"}), (2, "stdout", {"text": "hi\n"})])
        else:
            body = _sse(
                [
                    (2, "stdout", {"text": "hi\n"}),
                    (3, "state", {"state": "settled"}),
                    (4, "stdout", {"text": "never read"}),
                ]
            )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = CoordinatorClient(base_url="http://coord", transport=httpx.MockTransport(handler))
    events = list(client.events("t-1"))
    assert [e.id for e in events] == [1, 2, 3]
    assert seen_last_ids == ["0", "2"]


def test_4xx_becomes_a_coordinator_error_with_its_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no task t-9", "field": None})

    client = CoordinatorClient(base_url="http://coord", transport=httpx.MockTransport(handler))
    with pytest.raises(CoordinatorError) as info:
        client.get_task("t-9")
    assert info.value.status == 404 and info.value.detail == "no task t-9"
