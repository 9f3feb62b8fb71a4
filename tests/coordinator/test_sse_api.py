"""The event stream through ASGI: SSE framing, resuming, ending, and the JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .coordinator_helpers import Coord

pytestmark = pytest.mark.anyio


def _parse_sse(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body (comments, i.e. pings, skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if fields:
            events.append(fields)
    return events


async def _settled_task(coord: Coord) -> str:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()["id"]
    for i in range(3):
        await provider.post_events(lease, {"kind": "stdout", "data": {"text": f"line {i}\n"}})
    await provider.post_result(lease)
    return str(task["id"])


async def test_stream_of_an_ended_task_sends_everything_then_closes(coord: Coord) -> None:
    task_id = await _settled_task(coord)
    r = await coord.http.get(f"/v1/tasks/{task_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _parse_sse(r.text)
    stored = await coord.events(task_id)
    assert [int(e["id"]) for e in events] == [e["id"] for e in stored]
    assert [e["event"] for e in events] == [e["kind"] for e in stored]
    assert [json.loads(e["data"]) for e in events] == stored
    assert json.loads(events[-1]["data"])["data"]["state"] == "settled"


async def test_resume_with_last_event_id_or_after(coord: Coord) -> None:
    task_id = await _settled_task(coord)
    stored = await coord.events(task_id)
    cut = stored[3]["id"]
    by_header = await coord.http.get(
        f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": str(cut)}
    )
    by_query = await coord.http.get(f"/v1/tasks/{task_id}/events", params={"after": cut})
    expected = [e["id"] for e in stored[4:]]
    assert [int(e["id"]) for e in _parse_sse(by_header.text)] == expected
    assert [int(e["id"]) for e in _parse_sse(by_query.text)] == expected
    assert [e["id"] for e in await coord.events(task_id, after=cut)] == expected


async def test_resuming_after_the_end_closes_at_once(coord: Coord) -> None:
    task_id = await _settled_task(coord)
    last = (await coord.events(task_id))[-1]["id"]
    r = await coord.http.get(f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": str(last)})
    assert r.status_code == 200 and _parse_sse(r.text) == []


async def test_stream_of_a_cancelled_task_ends_with_the_cancel(coord: Coord) -> None:
    task = await coord.submit()
    await coord.http.post(f"/v1/tasks/{task['id']}/cancel")
    events = _parse_sse((await coord.http.get(f"/v1/tasks/{task['id']}/events")).text)
    assert [json.loads(e["data"])["data"]["state"] for e in events] == ["queued", "cancelled"]


async def test_bad_resume_points_are_refused(coord: Coord) -> None:
    task = await coord.submit()
    url = f"/v1/tasks/{task['id']}/events"
    r = await coord.http.get(url, headers={"Last-Event-ID": "seven"})
    assert r.status_code == 422 and r.json()["field"] == "Last-Event-ID"
    r = await coord.http.get(url, params={"after": -1})
    assert r.status_code == 422 and r.json()["field"] == "after"
    r = await coord.http.get(url, params={"after": 2**70})
    assert r.status_code == 422 and r.json()["field"] == "after"
    r = await coord.http.get(url, headers={"Last-Event-ID": str(2**70)})
    assert r.status_code == 422 and r.json()["field"] == "Last-Event-ID"
    r = await coord.http.get(url, params={"format": "xml"})
    assert r.status_code == 422 and r.json()["field"] == "format"


async def test_json_form_lists_events_after_an_id(coord: Coord) -> None:
    task_id = await _settled_task(coord)
    everything = await coord.events(task_id)
    r = await coord.http.get(
        f"/v1/tasks/{task_id}/events",
        params={"format": "json", "after": everything[1]["id"], "limit": 2},
    )
    assert r.json() == everything[2:4]
